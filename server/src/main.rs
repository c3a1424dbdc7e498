//! `server`: not built yet. The fleet issue fills this binary; today it only says so.
fn main() {
    eprintln!("server: not implemented yet (see the fleet issue); nothing was started");
    std::process::exit(2);
}
