//! Embedding husk's engine: run a container from an image in a husk store, then read its log
//! and exit code. Run as root, with the image already in the store (`husk pull IMAGE`):
//!
//!     cargo run -p husk-engine --example run_container -- /var/lib/husk busybox echo hello

use husk_engine::{Attach, Engine, LogOptions, RunOptions};

fn main() -> Result<(), husk_engine::Error> {
    let mut args = std::env::args().skip(1);
    let root = args.next().unwrap_or_else(|| "/var/lib/husk".into());
    let image = args.next().unwrap_or_else(|| "busybox".into());
    let engine = Engine::at(root)?;
    let opts = RunOptions {
        image,
        command: args.collect(),
        ..RunOptions::default()
    };
    // A monitor process holds the container and writes its log; we wait for its end.
    let run = engine.run(&opts, Attach::Detached, &|_| {})?;
    let code = engine.wait(&run.id)?;
    engine.logs(&run.id, &LogOptions::default(), &mut |line| {
        print!("{}", line.text);
        Ok(())
    })?;
    println!("{} exited with {code}", run.name);
    engine.remove(&run.id, false, true)
}
