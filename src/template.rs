//! docker's `--format`: `table` (the default), `json` (one object a line), or a Go template
//! (`{{.Names}}`, `{{json .}}`, `table {{.ID}}\t{{.Status}}`) rendered with gtmpl and docker's
//! template functions. A `table` template gets a header line, the template rendered over the
//! column names, and its tabs aligned as docker's tabwriter aligns them.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{anyhow, Result};
use gtmpl::{Context, FuncError, Template, Value};
use serde_json::Value as Json;

/// What `--format` asked for.
pub enum Output {
    Table,
    Json,
    Template { table: bool, template: Template },
}

impl Output {
    pub fn parse(format: &str) -> Result<Output> {
        match format {
            "" | "table" => Ok(Output::Table),
            "json" => Ok(Output::Json),
            f => {
                let (table, text) = match f.strip_prefix("table") {
                    Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                        (true, rest.trim_start())
                    }
                    _ => (false, f),
                };
                Ok(Output::Template {
                    table,
                    template: compile(&unescape(text))?,
                })
            }
        }
    }
}

/// docker's CLI turns `\t` and `\n` typed in a shell's single quotes into the characters.
fn unescape(text: &str) -> String {
    text.replace("\\t", "\t").replace("\\n", "\n")
}

fn compile(text: &str) -> Result<Template> {
    let mut t = Template::default();
    let funcs: [(&str, gtmpl::Func); 8] = [
        ("json", json),
        ("join", join),
        ("upper", upper),
        ("lower", lower),
        ("title", title),
        ("split", split),
        ("truncate", truncate),
        ("pad", pad),
    ];
    for (name, f) in funcs {
        t.add_func(name, f);
    }
    t.parse(text)
        .map_err(|e| anyhow!("invalid --format template: {e}"))?;
    Ok(t)
}

/// Render one item (inspect's `-f`): the template's text, without a newline of its own.
pub fn render(t: &Template, item: &Json) -> Result<String> {
    t.render(&Context::from(to_value(item)))
        .map_err(|e| anyhow!("template: {e}"))
}

/// Write `items` as `--format` asks (a template or JSON lines), with `headers` (field →
/// column title) for a `table` template. `Output::Table` is the caller's own table.
pub fn write_items(
    out: &mut impl Write,
    output: &Output,
    items: &[Json],
    headers: &[(&str, &str)],
) -> Result<()> {
    match output {
        Output::Table => Err(anyhow!("the default table is printed by its command")),
        Output::Json => {
            for i in items {
                writeln!(out, "{i}")?;
            }
            Ok(())
        }
        Output::Template {
            table: false,
            template,
        } => {
            for i in items {
                writeln!(out, "{}", render(template, i)?)?;
            }
            Ok(())
        }
        Output::Template {
            table: true,
            template,
        } => {
            let header: serde_json::Map<String, Json> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), Json::String(v.to_string())))
                .collect();
            let mut lines = vec![render(template, &Json::Object(header))?];
            for i in items {
                lines.push(render(template, i)?);
            }
            write_aligned(out, &lines)
        }
    }
}

/// docker's tabwriter (minimum width 10, padding 3): the tab-separated cells of each line
/// padded to their column's widest cell.
fn write_aligned(out: &mut impl Write, lines: &[String]) -> Result<()> {
    let rows: Vec<Vec<&str>> = lines
        .iter()
        .flat_map(|l| l.split('\n'))
        .map(|l| l.split('\t').collect())
        .collect();
    let mut width: Vec<usize> = Vec::new();
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            let w = (c.chars().count() + 3).max(10);
            if width.len() <= i {
                width.push(w);
            } else {
                width[i] = width[i].max(w);
            }
        }
    }
    for r in &rows {
        let mut s = String::new();
        for (i, c) in r.iter().enumerate() {
            s.push_str(c);
            if i + 1 < r.len() {
                s.push_str(&" ".repeat(width[i] - c.chars().count()));
            }
        }
        writeln!(out, "{}", s.trim_end())?;
    }
    Ok(())
}

fn to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::Nil,
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        Json::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => n
            .as_i64()
            .map(Json::from)
            .or_else(|| n.as_u64().map(Json::from))
            .or_else(|| n.as_f64().map(Json::from))
            .unwrap_or(Json::Null),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => {
            // Sorted keys, as Go's encoding/json writes maps.
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            Json::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), to_json(&o[k])))
                    .collect(),
            )
        }
    }
}

fn string_arg(name: &str, args: &[Value], i: usize) -> Result<String, FuncError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(Value::Nil) | Some(Value::NoValue) => Ok(String::new()),
        Some(_) => Err(FuncError::Generic(format!(
            "{name}: argument {} is not a string",
            i + 1
        ))),
        None => Err(FuncError::AtLeastXArgs(name.into(), i + 1)),
    }
}

fn int_arg(name: &str, args: &[Value], i: usize) -> Result<usize, FuncError> {
    match args.get(i) {
        Some(Value::Number(n)) => n.as_u64().map(|n| n as usize).ok_or_else(|| {
            FuncError::Generic(format!("{name}: argument {} must be a count", i + 1))
        }),
        _ => Err(FuncError::Generic(format!(
            "{name}: argument {} must be a number",
            i + 1
        ))),
    }
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    let v = args
        .first()
        .ok_or_else(|| FuncError::ExactlyXArgs("json".into(), 1))?;
    Ok(Value::String(to_json(v).to_string()))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = string_arg("join", args, 1)?;
    let parts: Vec<String> = match args.first() {
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, _)| string_arg("join", a, i))
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(FuncError::Generic(
                "join: the first argument must be a list".into(),
            ))
        }
    };
    Ok(Value::String(parts.join(&sep)))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string_arg("upper", args, 0)?.to_uppercase()))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string_arg("lower", args, 0)?.to_lowercase()))
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg("title", args, 0)?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    Ok(Value::String(out))
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg("split", args, 0)?;
    let sep = string_arg("split", args, 1)?;
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
}

fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg("truncate", args, 0)?;
    let n = int_arg("truncate", args, 1)?;
    Ok(Value::String(s.chars().take(n).collect()))
}

fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg("pad", args, 0)?;
    let (before, after) = (int_arg("pad", args, 1)?, int_arg("pad", args, 2)?);
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(before),
        " ".repeat(after)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn out(format: &str, items: &[Json], headers: &[(&str, &str)]) -> String {
        let mut buf = Vec::new();
        write_items(&mut buf, &Output::parse(format).unwrap(), items, headers).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn templates_render_as_dockers_do() {
        let items = [
            json!({"ID": "abc", "Names": "web", "Status": "Up 1 second", "Labels": {"a": "1"}, "Ports": ["80", "443"]}),
            json!({"ID": "defg", "Names": "db", "Status": "Exited (0)", "Labels": {}, "Ports": []}),
        ];
        assert_eq!(out("{{.Names}}", &items, &[]), "web\ndb\n");
        assert_eq!(
            out(
                "table {{.ID}}\\t{{.Names}}",
                &items,
                &[("ID", "CONTAINER ID"), ("Names", "NAMES")]
            ),
            "CONTAINER ID   NAMES\nabc            web\ndefg           db\n"
        );
        assert_eq!(out("{{json .Labels}}", &items[..1], &[]), "{\"a\":\"1\"}\n");
        assert_eq!(
            out(
                "{{upper .Names}}-{{lower \"X\"}}-{{title \"up one\"}}",
                &items[..1],
                &[]
            ),
            "WEB-x-Up One\n"
        );
        assert_eq!(out("{{join .Ports \",\"}}", &items[..1], &[]), "80,443\n");
        assert_eq!(
            out(
                "{{truncate .Status 2}}|{{pad .Names 1 2}}|",
                &items[..1],
                &[]
            ),
            "Up| web  |\n"
        );
        assert_eq!(
            out(
                "{{range split .Status \" \"}}[{{.}}]{{end}}",
                &items[..1],
                &[]
            ),
            "[Up][1][second]\n"
        );
        assert_eq!(out("json", &items[..1], &[]).lines().count(), 1);
        assert!(
            Output::parse("{{.Names").is_err(),
            "a template that does not parse"
        );
        assert!(matches!(Output::parse("table").unwrap(), Output::Table));
    }
}
