{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "shoal-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources: release-chart, or the release name alone
when it already contains the chart name.
*/}}
{{- define "shoal-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "shoal-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable for the life of the release (a Deployment's selector is immutable).
*/}}
{{- define "shoal-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shoal-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Standard labels of every resource.
*/}}
{{- define "shoal-operator.labels" -}}
helm.sh/chart: {{ include "shoal-operator.chart" . }}
{{ include "shoal-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shoal
{{- end }}

{{/*
Name of the ServiceAccount.
*/}}
{{- define "shoal-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shoal-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Operator image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "shoal-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The rules the operator needs on the resources it watches and owns, shared by the
ClusterRole (all namespaces) and the Role (values.watchNamespace). Least privilege:
no wildcards, no secrets, only the verbs the operator uses.
*/}}
{{- define "shoal-operator.rules" -}}
- apiGroups: ["shoal.dev"]
  resources: ["kvclusters"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["shoal.dev"]
  resources: ["kvclusters/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["shoal.dev"]
  resources: ["kvclusters/finalizers"]
  verbs: ["update"]
# KvBackup: backups taken by the operator
- apiGroups: ["shoal.dev"]
  resources: ["kvbackups"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["shoal.dev"]
  resources: ["kvbackups/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# spec.tls: the operator-managed CA and certificates; KvBackup and restoreFrom
# S3 settings (credentialsSecret) (read by name, never listed)
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
# spec.networkPolicy
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["create", "patch", "delete"]
# spec.tls.mode CertManager
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["create", "patch"]
{{- end }}
