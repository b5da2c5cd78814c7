fn main() {
    println!("corelog");
}
