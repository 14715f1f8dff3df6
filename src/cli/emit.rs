//! One way every subcommand prints its result: one JSON value with `--json`, text otherwise.

use serde::Serialize;

/// Prints `value` as one line of JSON when `json`, else `human()` as it is.
pub fn emit<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        print!("{}", human());
    }
    Ok(())
}
