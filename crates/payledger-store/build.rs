// `sqlx::migrate!` embeds `migrations/` when this crate compiles, but Cargo cannot see that a
// new file there changes the crate: without this line a build after adding a migration keeps
// embedding the old set, and tests run against a database without it.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
