//! The single tool the model can call, `execute_python_code`, and its arguments.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

pub const TOOL_NAME: &str = "execute_python_code";

/// The JSON schema of the tool's parameters.
pub fn parameters_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "code": {
                "type": "string",
                "description": "Python 3 code, run like a notebook cell in a sandbox without network. The value of the last expression is shown; display(obj) shows any object; plt.show() and figures left open come back as PNG files. Variables, imports and functions persist across calls in this conversation. The user's files: load_file(file_id), or read-only at /mnt/data/<name>, or the file_id itself as a path. Files written to the working directory (not /mnt/data) are returned to the user and can be loaded in later calls by their file_id. print() what you need to see."
            },
            "timeout": {
                "type": "number",
                "description": "Seconds the code may run; capped by the server's limit."
            }
        },
        "required": ["code"],
        "additionalProperties": false
    })
}

pub const DESCRIPTION: &str = "Run Python code in an isolated sandbox with numpy, pandas, matplotlib, scipy, scikit-learn and more, like a Jupyter notebook: the last expression's value is shown (DataFrames as tables), display(obj) works, plt.show() sends the figure to the user, and variables, imports and functions persist across calls in this conversation. Files written to the working directory are sent to the user and stay loadable by file_id. load_file(file_id) returns the user's uploaded or generated files as natural objects (DataFrame, dict, image, ...); the same files are read-only at /mnt/data/<name>, and the file_id works as a path too. If a run fails, fix the code and call again.";

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub code: String,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ToolArgsError {
    #[error("the tool arguments are not valid JSON of the expected shape: {0}")]
    Shape(String),
    #[error("the code is empty")]
    EmptyCode,
}

#[derive(Deserialize)]
struct RawArgs {
    code: String,
    #[serde(default)]
    timeout: Option<f64>,
}

/// Parses the model's arguments; the timeout is capped by `max_timeout` and defaults to it.
pub fn parse_arguments(arguments: &str, max_timeout: Duration) -> Result<ToolCall, ToolArgsError> {
    let raw: RawArgs =
        serde_json::from_str(arguments).map_err(|e| ToolArgsError::Shape(e.to_string()))?;
    if raw.code.trim().is_empty() {
        return Err(ToolArgsError::EmptyCode);
    }
    let timeout = match raw.timeout {
        Some(secs) if secs.is_finite() && secs > 0.0 => {
            // Capped before conversion: a huge number would overflow a Duration.
            Duration::try_from_secs_f64(secs.min(max_timeout.as_secs_f64())).unwrap_or(max_timeout)
        }
        _ => max_timeout,
    };
    Ok(ToolCall {
        code: raw.code,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_is_capped_and_defaulted() {
        let max = Duration::from_secs(60);
        let call = parse_arguments(r#"{"code":"print(1)","timeout":600}"#, max).unwrap();
        assert_eq!(call.timeout, max);
        let call = parse_arguments(r#"{"code":"print(1)","timeout":5}"#, max).unwrap();
        assert_eq!(call.timeout, Duration::from_secs(5));
        let call = parse_arguments(r#"{"code":"print(1)"}"#, max).unwrap();
        assert_eq!(call.timeout, max);
        let call = parse_arguments(r#"{"code":"print(1)","timeout":-3}"#, max).unwrap();
        assert_eq!(call.timeout, max);
        for huge in ["1e30", "1e19", "1e300"] {
            let args = format!(r#"{{"code":"print(1)","timeout":{huge}}}"#);
            assert_eq!(parse_arguments(&args, max).unwrap().timeout, max, "{huge}");
        }
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        let max = Duration::from_secs(1);
        assert!(matches!(
            parse_arguments("not json", max),
            Err(ToolArgsError::Shape(_))
        ));
        assert!(matches!(
            parse_arguments("{}", max),
            Err(ToolArgsError::Shape(_))
        ));
        assert_eq!(
            parse_arguments(r#"{"code":"  "}"#, max),
            Err(ToolArgsError::EmptyCode)
        );
    }

    #[test]
    fn schema_requires_code() {
        assert_eq!(parameters_schema()["required"], json!(["code"]));
    }
}
