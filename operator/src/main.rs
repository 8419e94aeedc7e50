fn main() {
    print!("{}", shoal_operator::crd::crd_yaml());
}
