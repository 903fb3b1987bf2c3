//! The local moderator on the command line, words only: each line of standard input (or
//! each argument) with its decision under the default policy and what raised it.
//!
//! ```text
//! cargo run -p models --example moderate -- "I will kill everyone at the station"
//! ```

use std::io::BufRead;

use models::moderation::{LocalModerator, Policy};

fn main() {
    let moderator = LocalModerator::new();
    let policy = Policy::default();
    let texts: Vec<String> = match std::env::args().skip(1).collect::<Vec<_>>() {
        args if !args.is_empty() => args,
        _ => std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .collect(),
    };
    for text in texts {
        let (decision, triggered) = policy.decide(&moderator.score(&text));
        println!("{decision:<8} {triggered:?}  {text}");
        for why in moderator.explain(&text) {
            println!("         {why}");
        }
    }
}
