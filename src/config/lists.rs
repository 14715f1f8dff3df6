//! Pure: the operator's lists in settings (distribution names, `host[:port]` items), parsed
//! here so that settings are validated where they are read and every part below uses the
//! same parse.

use std::fmt;

/// The longest distribution or module name accepted anywhere.
pub const MAX_NAME_LEN: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

impl Upstream {
    /// Hosts as URLs give them (`[::1]`, `PyPI.org`), compared bare and in lower case.
    pub(crate) fn new(host: &str, port: u16) -> Upstream {
        Upstream {
            host: host.trim_matches(['[', ']']).to_ascii_lowercase(),
            port,
        }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `host[:port]` items of a comma-separated setting; the port defaults to 443.
pub fn parse_upstreams(list: &str) -> Result<Vec<Upstream>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let url = url::Url::parse(&format!("https://{item}/"))
                .map_err(|_| format!("`{item}` is not host[:port]"))?;
            let host = url
                .host_str()
                .filter(|_| url.path() == "/" && url.username().is_empty())
                .ok_or_else(|| format!("`{item}` is not host[:port]"))?;
            Ok(Upstream::new(host, url.port().unwrap_or(443)))
        })
        .collect()
}

/// PEP 503 normalized form: lower case, runs of `-`, `_`, `.` become one `-`. The result is
/// safe as a directory name and as a pip argument.
pub fn normalize_distribution(name: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return None;
    }
    let first = name.chars().next()?;
    let last = name.chars().last()?;
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut in_separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            in_separator = true;
        } else {
            if in_separator {
                out.push('-');
                in_separator = false;
            }
            out.push(c.to_ascii_lowercase());
        }
    }
    Some(out)
}

/// Parses an operator list (`a, b,c`) into normalized names; invalid entries are returned
/// separately so configuration errors can name them.
pub fn parse_list(list: &str) -> (Vec<String>, Vec<String>) {
    let mut valid = Vec::new();
    let mut invalid = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match normalize_distribution(entry) {
            Some(name) => valid.push(name),
            None => invalid.push(entry.to_string()),
        }
    }
    valid.sort();
    valid.dedup();
    (valid, invalid)
}
