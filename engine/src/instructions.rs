//! Dockerfile instructions applied to an image config's `config`, as docker's `import -c` and
//! `commit -c` take them: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER,
//! VOLUME and WORKDIR.

use serde_json::{json, Value};

use crate::error::{invalid, Result};
use crate::json::{array, object};

/// Apply `change` (`CMD ["sh"]`, `ENV A=1 B=2`, `EXPOSE 80/tcp`, …) to `config`.
pub fn apply(config: &mut Value, change: &str) -> Result<()> {
    let change = change.trim();
    let (word, rest) = change
        .split_once(char::is_whitespace)
        .map(|(w, r)| (w, r.trim()))
        .unwrap_or((change, ""));
    let c = object(config);
    match word.to_ascii_uppercase().as_str() {
        "CMD" => {
            c.insert("Cmd".into(), json!(command(rest, change)?));
        }
        "ENTRYPOINT" => {
            c.insert("Entrypoint".into(), json!(command(rest, change)?));
        }
        "ENV" => {
            let list = array(c.entry("Env").or_insert(Value::Null));
            for (k, v) in pairs(rest, change)? {
                list.retain(|e| e.as_str().and_then(|e| e.split_once('=')).map(|(n, _)| n) != Some(&k));
                list.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let labels = object(c.entry("Labels").or_insert(Value::Null));
            for (k, v) in pairs(rest, change)? {
                labels.insert(k, json!(v));
            }
        }
        "EXPOSE" => {
            let ports = object(c.entry("ExposedPorts").or_insert(Value::Null));
            for p in rest.split_whitespace() {
                let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                if num.parse::<u16>().is_err() || !["tcp", "udp", "sctp"].contains(&proto) {
                    invalid!("invalid change {change:?}: {p:?} is not a port");
                }
                ports.insert(format!("{num}/{proto}"), json!({}));
            }
        }
        "VOLUME" => {
            let volumes = object(c.entry("Volumes").or_insert(Value::Null));
            let paths: Vec<String> = if rest.starts_with('[') {
                serde_json::from_str(rest)
                    .or_else(|_| invalid!("invalid change {change:?}: not a JSON list"))?
            } else {
                rest.split_whitespace().map(str::to_string).collect()
            };
            for p in paths {
                volumes.insert(p, json!({}));
            }
        }
        "USER" | "WORKDIR" | "STOPSIGNAL" if !rest.is_empty() => {
            let key = match word.to_ascii_uppercase().as_str() {
                "USER" => "User",
                "WORKDIR" => "WorkingDir",
                _ => "StopSignal",
            };
            c.insert(key.into(), json!(rest));
        }
        "ONBUILD" if !rest.is_empty() => {
            array(c.entry("OnBuild").or_insert(Value::Null)).push(json!(rest));
        }
        _ => invalid!(
            "invalid change {change:?}: use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR with its value"
        ),
    }
    Ok(())
}

/// CMD's and ENTRYPOINT's two forms: a JSON list, or a shell command line.
fn command(rest: &str, change: &str) -> Result<Vec<String>> {
    if rest.starts_with('[') {
        return serde_json::from_str(rest)
            .or_else(|_| invalid!("invalid change {change:?}: not a JSON list of strings"));
    }
    if rest.is_empty() {
        invalid!("invalid change {change:?}: no command");
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
}

/// ENV's and LABEL's `K=V K2="V 2"` pairs, or the older `K V` form.
fn pairs(rest: &str, change: &str) -> Result<Vec<(String, String)>> {
    if !rest.contains('=') {
        return match rest.split_once(char::is_whitespace) {
            Some((k, v)) => Ok(vec![(k.into(), v.trim().into())]),
            None => invalid!("invalid change {change:?}: use NAME=VALUE"),
        };
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || key.contains(char::is_whitespace) {
            invalid!("invalid change {change:?}: use NAME=VALUE");
        }
        let mut value = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, '\\') => {
                    chars.next();
                    if let Some(n) = chars.peek() {
                        value.push(*n);
                    }
                }
                (_, c) => value.push(c),
            }
            chars.next();
        }
        if quote.is_some() {
            invalid!("invalid change {change:?}: an unclosed quote");
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_as_dockerfile_instructions() {
        let mut c = json!({"Env": ["PATH=/bin", "A=old"]});
        for ch in [
            r#"CMD ["sleep", "10"]"#,
            "ENTRYPOINT /entry.sh --flag",
            r#"ENV A=new B="two words" C=x\ y"#,
            "ENV OLD style value",
            "EXPOSE 80 53/udp",
            r#"LABEL org.example="a b" v=1"#,
            "USER app",
            "WORKDIR /srv",
            "VOLUME /data /cache",
            "STOPSIGNAL SIGINT",
        ] {
            apply(&mut c, ch).unwrap();
        }
        assert_eq!(c["Cmd"], json!(["sleep", "10"]));
        assert_eq!(
            c["Entrypoint"],
            json!(["/bin/sh", "-c", "/entry.sh --flag"])
        );
        assert_eq!(
            c["Env"],
            json!([
                "PATH=/bin",
                "A=new",
                "B=two words",
                "C=x y",
                "OLD=style value"
            ])
        );
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Labels"], json!({"org.example": "a b", "v": "1"}));
        assert_eq!(
            (c["User"].as_str(), c["WorkingDir"].as_str()),
            (Some("app"), Some("/srv"))
        );
        assert_eq!(c["Volumes"], json!({"/data": {}, "/cache": {}}));
        assert_eq!(c["StopSignal"], "SIGINT");
        // Fields an image's config has as null, or of another shape, take the change too.
        let mut odd = json!({"Env": null, "Labels": "x", "Volumes": [1]});
        for ch in ["ENV A=1", "LABEL k=v", "VOLUME /v", "ONBUILD RUN true"] {
            apply(&mut odd, ch).unwrap();
        }
        assert_eq!(
            odd,
            json!({"Env": ["A=1"], "Labels": {"k": "v"}, "Volumes": {"/v": {}}, "OnBuild": ["RUN true"]})
        );
        let mut not_object = json!(null);
        apply(&mut not_object, "USER app").unwrap();
        assert_eq!(not_object, json!({"User": "app"}));
        for bad in [
            "RUN true",
            "CMD",
            "EXPOSE http",
            "ENV A=\"open",
            "CMD [\"x\"",
            "USER",
            "ENV x",
        ] {
            assert!(apply(&mut c, bad).is_err(), "{bad}");
        }
    }
}
