//! Dockerfile parsing: turns a Dockerfile's text into a list of instructions,
//! following the Dockerfile reference as docker's builders read it (parser
//! directives, comments, line continuations, flags, JSON exec forms and
//! BuildKit heredocs).
//!
//! Values that docker expands at build time (ENV/ARG/LABEL values, COPY
//! sources, ...) are kept raw here, quotes included, so that the builder can run
//! them through [`expand`] with the variables in scope at that step.

use std::fmt;

/// A parse error, its text already naming the line: "Dockerfile line 7: unknown instruction: FOO".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// From the `# escape=` directive; `\` by default.
    pub escape: char,
    /// The `# syntax=` directive, kept only so the builder can say it is ignored.
    pub syntax: Option<String>,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// The instruction as docker prints it in "Step N/M : <text>".
    pub text: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub body: String,
    /// False when the delimiter was quoted, which turns expansion off as in a shell.
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", "cmd line"]`, as docker's Healthcheck.Test.
    pub test: Vec<String>,
    /// Nanoseconds.
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
    pub start_period: Option<u64>,
    pub start_interval: Option<u64>,
    pub retries: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    From {
        image: String,
        /// Lowercased: docker compares stage names case-insensitively.
        alias: Option<String>,
        platform: Option<String>,
    },
    Run {
        command: Command,
        network: Option<String>,
    },
    Copy {
        sources: Vec<String>,
        dest: String,
        from: Option<String>,
        chown: Option<String>,
        chmod: Option<String>,
        heredocs: Vec<Heredoc>,
    },
    Add {
        sources: Vec<String>,
        dest: String,
        chown: Option<String>,
        chmod: Option<String>,
        heredocs: Vec<Heredoc>,
    },
    Env(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Label(Vec<(String, String)>),
    Workdir(String),
    User(String),
    Cmd(Command),
    Entrypoint(Command),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Healthcheck(Health),
    StopSignal(String),
    Shell(Vec<String>),
    /// The trigger instruction's text, e.g. "RUN echo hi".
    Onbuild(String),
    Maintainer(String),
}

const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "LABEL",
    "WORKDIR",
    "USER",
    "CMD",
    "ENTRYPOINT",
    "EXPOSE",
    "VOLUME",
    "HEALTHCHECK",
    "STOPSIGNAL",
    "SHELL",
    "ONBUILD",
    "MAINTAINER",
];

fn line_error(line: usize, msg: impl fmt::Display) -> ParseError {
    ParseError(format!("Dockerfile line {line}: {msg}"))
}

/// A heredoc as read from the file, before it is turned into a RUN script or a COPY source.
struct RawHeredoc {
    name: String,
    chomp: bool,
    expand: bool,
    lines: Vec<String>,
    terminator: String,
}

impl RawHeredoc {
    fn body(&self) -> String {
        let mut body = String::new();
        for line in &self.lines {
            body.push_str(if self.chomp {
                line.trim_start_matches('\t')
            } else {
                line
            });
            body.push('\n');
        }
        body
    }
}

pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();

    let mut escape = '\\';
    let mut syntax = None;
    let mut seen_escape = false;
    let mut i = 0;
    while i < lines.len() {
        let Some((key, value)) = directive(lines[i]) else {
            break;
        };
        match key.as_str() {
            "escape" => {
                if seen_escape {
                    return Err(line_error(
                        i + 1,
                        "only one escape parser directive can be used",
                    ));
                }
                seen_escape = true;
                escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(line_error(
                            i + 1,
                            format!("invalid escape token '{other}' does not match ` or \\"),
                        ))
                    }
                };
            }
            "syntax" => syntax = Some(value.to_string()),
            // An unknown directive is a plain comment, and like any comment it ends the directives.
            _ => break,
        }
        i += 1;
    }

    let mut instructions = Vec::new();
    while i < lines.len() {
        let raw = lines[i];
        i += 1;
        if is_blank_or_comment(raw) {
            continue;
        }
        let start = i;
        let (mut logical, mut continues) = strip_continuation(raw.trim_start(), escape);
        while continues && i < lines.len() {
            let next = lines[i];
            i += 1;
            if is_blank_or_comment(next) {
                continue;
            }
            let (part, more) = strip_continuation(next, escape);
            logical.push_str(&part);
            continues = more;
        }

        let (keyword, rest) = split_keyword(&logical);
        let mut heredocs = Vec::new();
        if matches!(
            keyword.to_ascii_uppercase().as_str(),
            "RUN" | "COPY" | "ADD"
        ) {
            let (_, args) = take_flags(rest);
            if json_array(args).is_none() {
                for word in split_words(args, escape) {
                    let Some((name, chomp, expand)) = heredoc_word(&word) else {
                        continue;
                    };
                    let mut body = Vec::new();
                    let mut terminator = None;
                    while i < lines.len() {
                        let line = lines[i];
                        i += 1;
                        let candidate = if chomp {
                            line.trim_start_matches('\t')
                        } else {
                            line
                        };
                        if candidate == name {
                            terminator = Some(line.to_string());
                            break;
                        }
                        body.push(line.to_string());
                    }
                    let Some(terminator) = terminator else {
                        return Err(line_error(start, format!("unterminated heredoc <<{name}")));
                    };
                    heredocs.push(RawHeredoc {
                        name,
                        chomp,
                        expand,
                        lines: body,
                        terminator,
                    });
                }
            }
        }
        instructions.push(build(start, keyword, rest, escape, &heredocs)?);
    }

    Ok(Dockerfile {
        escape,
        syntax,
        instructions,
    })
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// A `# key=value` parser directive, key lowercased.
fn directive(line: &str) -> Option<(String, &str)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (key, value) = rest.split_once('=')?;
    let key = key.trim();
    let mut chars = key.chars();
    if !chars.next()?.is_ascii_alphabetic() || !chars.all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    Some((key.to_ascii_lowercase(), value))
}

/// Removes a trailing escape char (and whitespace after it); docker keeps everything
/// before it, so "a \" + "   b" joins as "a    b".
fn strip_continuation(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end();
    match t.strip_suffix(escape) {
        Some(before) => (before.to_string(), true),
        None => (line.to_string(), false),
    }
}

fn split_keyword(line: &str) -> (&str, &str) {
    let line = line.trim();
    match line.find(char::is_whitespace) {
        Some(at) => (&line[..at], line[at..].trim()),
        None => (line, ""),
    }
}

/// Byte index of the first whitespace outside quotes.
fn word_end(s: &str) -> usize {
    let mut quote = None;
    for (at, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c.is_whitespace() => return at,
            None => {}
        }
    }
    s.len()
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

type Flags = Vec<(String, Option<String>)>;

/// Leading `--name=value` / `--name` words, and what follows them.
fn take_flags(rest: &str) -> (Flags, &str) {
    let mut flags = Vec::new();
    let mut s = rest.trim_start();
    while s.starts_with("--") {
        let end = word_end(s);
        let word = &s[2..end];
        s = s[end..].trim_start();
        if word.is_empty() {
            // A bare `--` ends the flags, as in docker.
            break;
        }
        match word.split_once('=') {
            Some((name, value)) => flags.push((name.to_string(), Some(unquote(value).to_string()))),
            None => flags.push((word.to_string(), None)),
        }
    }
    (flags, s.trim())
}

fn json_array(args: &str) -> Option<Vec<String>> {
    if !args.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(args).ok()
}

/// Exec form when the arguments are a JSON array of strings; otherwise, as docker
/// does even for text that merely starts with `[`, the shell form.
fn command(args: &str) -> Command {
    match json_array(args) {
        Some(v) => Command::Exec(v),
        None => Command::Shell(args.to_string()),
    }
}

/// `<<NAME`, `<<-NAME`, `<<"NAME"`, `<<'NAME'` (optionally after a file descriptor
/// number): the name, whether tabs are stripped, whether the body is expanded.
fn heredoc_word(word: &str) -> Option<(String, bool, bool)> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let quoted = rest.contains('"') || rest.contains('\'');
    let name: String = rest.chars().filter(|c| *c != '"' && *c != '\'').collect();
    if name.is_empty() {
        return None;
    }
    Some((name, chomp, !quoted))
}

fn flag(flags: &Flags, name: &str) -> Option<String> {
    flags
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.clone())
}

fn build(
    line: usize,
    keyword: &str,
    rest: &str,
    escape: char,
    heredocs: &[RawHeredoc],
) -> Result<Instruction, ParseError> {
    let kw = keyword.to_ascii_uppercase();
    if !KEYWORDS.contains(&kw.as_str()) {
        return Err(line_error(line, format!("unknown instruction: {kw}")));
    }
    let text = if rest.is_empty() {
        kw.clone()
    } else {
        format!("{kw} {rest}")
    };
    let (flags, args) = take_flags(rest);
    check_flags(line, &kw, &flags)?;

    if args.is_empty() {
        let what = if matches!(kw.as_str(), "COPY" | "ADD") {
            "two arguments"
        } else {
            "one argument"
        };
        return Err(line_error(line, format!("{kw} requires at least {what}")));
    }

    let kind = match kw.as_str() {
        "FROM" => {
            let words: Vec<&str> = args.split_whitespace().collect();
            let alias = match words.as_slice() {
                [_] => None,
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("AS") => {
                    Some(name.to_ascii_lowercase())
                }
                _ => {
                    return Err(line_error(
                        line,
                        "FROM requires either one or three arguments (FROM image [AS name])",
                    ))
                }
            };
            Kind::From {
                image: words[0].to_string(),
                alias,
                platform: flag(&flags, "platform"),
            }
        }
        "RUN" => {
            let network = flag(&flags, "network");
            if let Some(n) = &network {
                if !matches!(n.as_str(), "none" | "host" | "default") {
                    return Err(line_error(
                        line,
                        format!("RUN --network must be none, host or default, not {n:?}"),
                    ));
                }
            }
            let command = if heredocs.is_empty() {
                command(args)
            } else {
                run_heredoc(args, escape, heredocs)
            };
            Kind::Run { command, network }
        }
        "COPY" | "ADD" => {
            let (sources, dest, docs) = copy_args(line, &kw, args, escape, heredocs)?;
            let chown = flag(&flags, "chown");
            let chmod = flag(&flags, "chmod");
            if kw == "COPY" {
                Kind::Copy {
                    sources,
                    dest,
                    from: flag(&flags, "from"),
                    chown,
                    chmod,
                    heredocs: docs,
                }
            } else {
                Kind::Add {
                    sources,
                    dest,
                    chown,
                    chmod,
                    heredocs: docs,
                }
            }
        }
        "ENV" => Kind::Env(name_values(line, &kw, args, escape, true)?),
        "LABEL" => Kind::Label(name_values(line, &kw, args, escape, false)?),
        "ARG" => {
            let mut out = Vec::new();
            for word in split_words(args, escape) {
                let (name, default) = match word.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (word, None),
                };
                if name.is_empty() {
                    return Err(line_error(line, "ARG names can not be blank"));
                }
                out.push((name, default));
            }
            Kind::Arg(out)
        }
        "WORKDIR" => Kind::Workdir(args.to_string()),
        "USER" => Kind::User(args.to_string()),
        "STOPSIGNAL" => Kind::StopSignal(args.to_string()),
        "MAINTAINER" => Kind::Maintainer(args.to_string()),
        "CMD" => Kind::Cmd(command(args)),
        "ENTRYPOINT" => Kind::Entrypoint(command(args)),
        "EXPOSE" => Kind::Expose(split_words(args, escape)),
        "VOLUME" => Kind::Volume(match json_array(args) {
            Some(v) => v,
            None => split_words(args, escape),
        }),
        "SHELL" => match json_array(args) {
            Some(v) if !v.is_empty() => Kind::Shell(v),
            Some(_) => return Err(line_error(line, "SHELL requires at least one argument")),
            None => {
                return Err(line_error(
                    line,
                    "SHELL requires the arguments to be in JSON form",
                ))
            }
        },
        "HEALTHCHECK" => Kind::Healthcheck(healthcheck(line, &flags, args)?),
        "ONBUILD" => {
            let (trigger, trigger_rest) = split_keyword(args);
            let upper = trigger.to_ascii_uppercase();
            match upper.as_str() {
                "ONBUILD" => {
                    return Err(line_error(
                        line,
                        "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ))
                }
                "FROM" | "MAINTAINER" => {
                    return Err(line_error(
                        line,
                        format!("{upper} isn't allowed as an ONBUILD trigger"),
                    ))
                }
                _ => {}
            }
            // Heredoc bodies can't follow a trigger, so its heredoc words stay plain text.
            let inner = build(line, trigger, trigger_rest, escape, &[])?;
            Kind::Onbuild(inner.text)
        }
        _ => return Err(line_error(line, format!("unknown instruction: {kw}"))),
    };
    Ok(Instruction { line, text, kind })
}

fn check_flags(line: usize, kw: &str, flags: &Flags) -> Result<(), ParseError> {
    let allowed: &[&str] = match kw {
        "FROM" => &["platform"],
        "RUN" => &["network", "mount", "security"],
        "COPY" => &["from", "chown", "chmod", "link"],
        "ADD" => &["chown", "chmod", "link", "checksum", "keep-git-dir"],
        "HEALTHCHECK" => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    };
    for (at, (name, value)) in flags.iter().enumerate() {
        if !allowed.contains(&name.as_str()) {
            return Err(line_error(
                line,
                format!("unknown flag: --{name} (for {kw})"),
            ));
        }
        if matches!(
            (kw, name.as_str()),
            ("RUN", "mount" | "security") | ("ADD", "checksum" | "keep-git-dir")
        ) {
            return Err(line_error(line, format!("{kw} --{name} is not supported")));
        }
        if flags[..at].iter().any(|(n, _)| n == name) {
            return Err(line_error(
                line,
                format!("duplicate flag specified: --{name}"),
            ));
        }
        match (name.as_str(), value.as_deref()) {
            // --link only changes layer layout, which a plain builder can ignore.
            ("link", None | Some("true" | "false")) => {}
            ("link", Some(v)) => {
                return Err(line_error(
                    line,
                    format!("expecting boolean value for flag --link, not: {v}"),
                ))
            }
            (_, None) => {
                return Err(line_error(
                    line,
                    format!("missing a value on flag: --{name}"),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A RUN whose only word is a heredoc runs the body as the script; otherwise the
/// shell must see the heredoc itself, so the text is rebuilt as a shell would read it.
fn run_heredoc(args: &str, escape: char, heredocs: &[RawHeredoc]) -> Command {
    let words = split_words(args, escape);
    if let ([word], [doc]) = (words.as_slice(), heredocs) {
        if heredoc_word(word).is_some() {
            return Command::Shell(doc.body());
        }
    }
    let mut script = args.to_string();
    for doc in heredocs {
        for line in doc.lines.iter().chain(std::iter::once(&doc.terminator)) {
            script.push('\n');
            script.push_str(line);
        }
    }
    Command::Shell(script)
}

type CopyArgs = (Vec<String>, String, Vec<Heredoc>);

fn copy_args(
    line: usize,
    kw: &str,
    args: &str,
    escape: char,
    heredocs: &[RawHeredoc],
) -> Result<CopyArgs, ParseError> {
    let words = json_array(args).unwrap_or_else(|| split_words(args, escape));
    let Some((dest, sources)) = words.split_last() else {
        return Err(line_error(
            line,
            format!("{kw} requires at least two arguments"),
        ));
    };
    if sources.is_empty() {
        return Err(line_error(
            line,
            format!("{kw} requires at least two arguments"),
        ));
    }
    let mut pending = heredocs.iter();
    let mut docs = Vec::new();
    let mut names = Vec::new();
    for source in sources {
        if heredoc_word(source).is_some() {
            if let Some(doc) = pending.next() {
                docs.push(Heredoc {
                    name: doc.name.clone(),
                    body: doc.body(),
                    expand: doc.expand,
                });
                names.push(doc.name.clone());
                continue;
            }
        }
        names.push(source.clone());
    }
    Ok((names, dest.clone(), docs))
}

/// ENV/LABEL `key=value` pairs, values kept raw for the builder to expand.
fn name_values(
    line: usize,
    kw: &str,
    args: &str,
    escape: char,
    legacy: bool,
) -> Result<Vec<(String, String)>, ParseError> {
    let words = split_words(args, escape);
    let first = words.first().map(String::as_str).unwrap_or_default();
    if legacy && !first.contains('=') {
        return match args.split_once(char::is_whitespace) {
            Some((key, value)) => Ok(vec![(key.to_string(), value.trim().to_string())]),
            None => Err(line_error(line, format!("{kw} must have two arguments"))),
        };
    }
    let mut pairs = Vec::new();
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(line_error(
                line,
                format!("{kw}: can't find = in {word:?}; must be of the form: name=value"),
            ));
        };
        if key.is_empty() {
            return Err(line_error(line, format!("{kw} names can not be blank")));
        }
        pairs.push((key.to_string(), value.to_string()));
    }
    Ok(pairs)
}

fn healthcheck(line: usize, flags: &Flags, args: &str) -> Result<Health, ParseError> {
    let (kind, rest) = split_keyword(args);
    let test = match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !rest.is_empty() {
                return Err(line_error(line, "HEALTHCHECK NONE takes no arguments"));
            }
            vec!["NONE".to_string()]
        }
        "CMD" => {
            if rest.is_empty() {
                return Err(line_error(line, "HEALTHCHECK CMD requires a command"));
            }
            match command(rest) {
                Command::Exec(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
                Command::Shell(s) => vec!["CMD-SHELL".to_string(), s],
            }
        }
        other => {
            return Err(line_error(
                line,
                format!("unknown type {other:?} in HEALTHCHECK (try CMD)"),
            ))
        }
    };
    let duration = |name: &str| -> Result<Option<u64>, ParseError> {
        match flag(flags, name) {
            None => Ok(None),
            Some(v) => parse_duration(&v).map(Some).ok_or_else(|| {
                line_error(
                    line,
                    format!("HEALTHCHECK --{name}: invalid duration {v:?}"),
                )
            }),
        }
    };
    let retries = match flag(flags, "retries") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            line_error(line, format!("HEALTHCHECK --retries: invalid number {v:?}"))
        })?),
    };
    Ok(Health {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })
}

/// Split `s` into words at unquoted whitespace, keeping quotes and escapes in each word (so `expand` can process each), as docker splits COPY/VOLUME/EXPOSE/LABEL arguments.
pub fn split_words(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                in_word = true;
                word.push(c);
                if c == escape {
                    if let Some(next) = chars.next() {
                        word.push(next);
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
            Some(q) => {
                word.push(c);
                if c == q {
                    quote = None;
                } else if c == escape && q == '"' {
                    // Inside double quotes an escaped quote must not end the quote.
                    if let Some(next) = chars.next() {
                        word.push(next);
                    }
                }
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Docker's word processing (its shell lexer's ProcessWord): quote removal and variable
/// expansion together. `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
/// `${VAR:?msg}` (error), the escape char escaping the next char (`\$` is a literal $), single
/// quotes prevent expansion and are removed, double quotes are removed but expand inside.
/// Unset variables expand to "". `lookup` returns a variable's value.
pub fn expand(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ParseError> {
    let mut lexer = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        lookup,
    };
    lexer.word(None)
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes up to the end, or up to and including an unquoted `stop`.
    fn word(&mut self, stop: Option<char>) -> Result<String, ParseError> {
        let mut out = String::new();
        while let Some(c) = self.next() {
            if Some(c) == stop {
                return Ok(out);
            }
            if c == self.escape {
                // A trailing escape escapes nothing and is dropped, as docker does.
                if let Some(n) = self.next() {
                    out.push(n);
                }
            } else if c == '\'' {
                out.push_str(&self.single_quoted()?);
            } else if c == '"' {
                out.push_str(&self.double_quoted()?);
            } else if c == '$' {
                out.push_str(&self.dollar()?);
            } else {
                out.push(c);
            }
        }
        match stop {
            Some(s) => Err(ParseError(format!("syntax error: missing '{s}'"))),
            None => Ok(out),
        }
    }

    fn single_quoted(&mut self) -> Result<String, ParseError> {
        let mut out = String::new();
        loop {
            match self.next() {
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
                None => {
                    return Err(ParseError(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_string(),
                    ))
                }
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, ParseError> {
        let mut out = String::new();
        loop {
            match self.next() {
                Some('"') => return Ok(out),
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) if c == self.escape => match self.peek() {
                    // Only these are escapable in double quotes; elsewhere the escape is literal.
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        out.push(n);
                    }
                    _ => out.push(c),
                },
                Some(c) => out.push(c),
                None => {
                    return Err(ParseError(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_string(),
                    ))
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if !(c.is_ascii_alphanumeric() || c == '_') {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }

    /// After a `$`.
    fn dollar(&mut self) -> Result<String, ParseError> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced()
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.name();
                Ok((self.lookup)(&name).unwrap_or_default())
            }
            // Positional parameters are never set in a Dockerfile.
            Some(c) if c.is_ascii_digit() => {
                self.pos += 1;
                Ok(String::new())
            }
            _ => Ok("$".to_string()),
        }
    }

    /// After `${`.
    fn braced(&mut self) -> Result<String, ParseError> {
        let name = self.name();
        if name.is_empty() {
            return Err(ParseError(
                "bad substitution: missing variable name".to_string(),
            ));
        }
        let (colon, op) = match self.next() {
            Some('}') => return Ok((self.lookup)(&name).unwrap_or_default()),
            Some(':') => (true, self.next()),
            other => (false, other),
        };
        let op = match op {
            Some(op @ ('-' | '+' | '?')) => op,
            Some(op) => {
                return Err(ParseError(format!(
                    "unsupported modifier ({}{op}) in substitution of {name}",
                    if colon { ":" } else { "" }
                )))
            }
            None => return Err(ParseError("syntax error: missing '}'".to_string())),
        };
        let word = self.word(Some('}'))?;
        let value = (self.lookup)(&name);
        let set = match &value {
            Some(v) => !colon || !v.is_empty(),
            None => false,
        };
        match op {
            '-' if set => Ok(value.unwrap_or_default()),
            '-' => Ok(word),
            '+' if set => Ok(word),
            '+' => Ok(String::new()),
            _ if set => Ok(value.unwrap_or_default()),
            _ if word.is_empty() => Err(ParseError(format!("{name}: is not allowed to be unset"))),
            _ => Err(ParseError(format!("{name}: {word}"))),
        }
    }
}

/// Go's time.ParseDuration subset used by HEALTHCHECK flags: "30s", "1m30s", "500ms", "1h", "2.5s", "10us", "0"; nanoseconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let bytes = s.as_bytes();
    let digits_from = |mut at: usize| {
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        at
    };
    let mut at = 0;
    let mut total: u128 = 0;
    while at < bytes.len() {
        let int_end = digits_from(at);
        let int_part = &s[at..int_end];
        at = int_end;
        let mut frac = "";
        if at < bytes.len() && bytes[at] == b'.' {
            let frac_end = digits_from(at + 1);
            frac = &s[at + 1..frac_end];
            at = frac_end;
        }
        if int_part.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_start = at;
        while at < bytes.len() && !bytes[at].is_ascii_digit() && bytes[at] != b'.' {
            at += 1;
        }
        let unit: u128 = match &s[unit_start..at] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        total = total.checked_add(whole.checked_mul(unit)?)?;
        // Digits past nanosecond precision can't change the result.
        let frac = &frac[..frac.len().min(18)];
        if !frac.is_empty() {
            let value: u128 = frac.parse().ok()?;
            total = total.checked_add(value * unit / 10u128.pow(frac.len() as u32))?;
        }
    }
    u64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn one(text: &str) -> Instruction {
        let df = parse(text).unwrap();
        assert_eq!(df.instructions.len(), 1, "{:?}", df.instructions);
        df.instructions.into_iter().next().unwrap()
    }

    fn kind(text: &str) -> Kind {
        one(text).kind
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().0
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn vars(word: &str) -> Result<String, ParseError> {
        let env: HashMap<&str, &str> = [("A", "a"), ("B", "b"), ("E", "")].into_iter().collect();
        expand(word, '\\', &|name| env.get(name).map(|v| v.to_string()))
    }

    #[test]
    fn from_forms() {
        assert_eq!(
            kind("FROM alpine:3.19"),
            Kind::From {
                image: "alpine:3.19".into(),
                alias: None,
                platform: None
            }
        );
        assert_eq!(
            kind("from --platform=linux/amd64 golang AS Build"),
            Kind::From {
                image: "golang".into(),
                alias: Some("build".into()),
                platform: Some("linux/amd64".into())
            }
        );
        assert!(error("FROM a b").contains("line 1"));
        assert!(error("FROM a as b c").contains("FROM requires either one or three"));
        assert_eq!(
            error("\n\nFROM"),
            "Dockerfile line 3: FROM requires at least one argument"
        );
    }

    #[test]
    fn run_forms_and_text() {
        let ins = one("run echo hi");
        assert_eq!(ins.text, "RUN echo hi");
        assert_eq!(
            ins.kind,
            Kind::Run {
                command: Command::Shell("echo hi".into()),
                network: None
            }
        );
        assert_eq!(
            kind(r#"RUN ["echo", "a b"]"#),
            Kind::Run {
                command: Command::Exec(strings(&["echo", "a b"])),
                network: None
            }
        );
        assert_eq!(
            kind("RUN --network=none true"),
            Kind::Run {
                command: Command::Shell("true".into()),
                network: Some("none".into())
            }
        );
        let ins = parse("FROM x\nRUN echo hi && \\\n    echo there\n")
            .unwrap()
            .instructions[1]
            .clone();
        assert_eq!(ins.line, 2);
        assert_eq!(ins.text, "RUN echo hi &&     echo there");
    }

    #[test]
    fn json_falls_back_to_shell() {
        assert_eq!(
            kind("CMD [not json"),
            Kind::Cmd(Command::Shell("[not json".into()))
        );
        assert_eq!(
            kind("ENTRYPOINT [\"a\", 1]"),
            Kind::Entrypoint(Command::Shell("[\"a\", 1]".into()))
        );
        assert_eq!(
            kind("ENTRYPOINT [\"/bin/sh\", \"-c\"]"),
            Kind::Entrypoint(Command::Exec(strings(&["/bin/sh", "-c"])))
        );
        assert_eq!(kind("CMD []"), Kind::Cmd(Command::Exec(vec![])));
    }

    #[test]
    fn copy_and_add() {
        assert_eq!(
            kind("COPY --from=build --chown=1:2 --chmod=644 --link a b /dst/"),
            Kind::Copy {
                sources: strings(&["a", "b"]),
                dest: "/dst/".into(),
                from: Some("build".into()),
                chown: Some("1:2".into()),
                chmod: Some("644".into()),
                heredocs: vec![]
            }
        );
        assert_eq!(
            kind(r#"ADD ["a b", "/x y/"]"#),
            Kind::Add {
                sources: strings(&["a b"]),
                dest: "/x y/".into(),
                chown: None,
                chmod: None,
                heredocs: vec![]
            }
        );
        assert_eq!(
            error("COPY onlyone"),
            "Dockerfile line 1: COPY requires at least two arguments"
        );
        assert!(error("ADD --checksum=sha256:x a b").contains("ADD --checksum is not supported"));
        assert!(error("ADD --keep-git-dir=true a b").contains("not supported"));
        assert!(error("COPY --parents a b").contains("unknown flag: --parents"));
        assert!(error("COPY --from a b").contains("missing a value on flag: --from"));
    }

    #[test]
    fn env_label_arg() {
        assert_eq!(
            kind(r#"ENV A=1 B="two words" C=a\ b"#),
            Kind::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"two words\"".into()),
                ("C".into(), "a\\ b".into()),
            ])
        );
        assert_eq!(
            kind("ENV KEY value with  spaces"),
            Kind::Env(vec![("KEY".into(), "value with  spaces".into())])
        );
        assert!(error("ENV A=1 B").contains("can't find ="));
        assert!(error("ENV ONLY").contains("ENV must have two arguments"));
        assert_eq!(
            kind(r#"LABEL a.b="c d" e=f"#),
            Kind::Label(vec![
                ("a.b".into(), "\"c d\"".into()),
                ("e".into(), "f".into())
            ])
        );
        assert!(error("LABEL key value").contains("line 1: LABEL: can't find ="));
        assert_eq!(
            kind("ARG A B=2 C="),
            Kind::Arg(vec![
                ("A".into(), None),
                ("B".into(), Some("2".into())),
                ("C".into(), Some("".into()))
            ])
        );
    }

    #[test]
    fn simple_instructions() {
        assert_eq!(kind("WORKDIR /app dir "), Kind::Workdir("/app dir".into()));
        assert_eq!(kind("USER 1000:1000"), Kind::User("1000:1000".into()));
        assert_eq!(
            kind("STOPSIGNAL SIGKILL"),
            Kind::StopSignal("SIGKILL".into())
        );
        assert_eq!(
            kind("MAINTAINER Jo <j@x>"),
            Kind::Maintainer("Jo <j@x>".into())
        );
        assert_eq!(
            kind("EXPOSE 80/tcp 443 \"53/udp\""),
            Kind::Expose(strings(&["80/tcp", "443", "\"53/udp\""]))
        );
        assert_eq!(kind("VOLUME /a /b"), Kind::Volume(strings(&["/a", "/b"])));
        assert_eq!(
            kind(r#"VOLUME ["/a b", "/c"]"#),
            Kind::Volume(strings(&["/a b", "/c"]))
        );
        assert_eq!(
            kind(r#"SHELL ["powershell", "-command"]"#),
            Kind::Shell(strings(&["powershell", "-command"]))
        );
        assert_eq!(
            error("FROM x\nSHELL /bin/bash -c"),
            "Dockerfile line 2: SHELL requires the arguments to be in JSON form"
        );
        assert_eq!(
            kind("CMD echo $HOME"),
            Kind::Cmd(Command::Shell("echo $HOME".into()))
        );
    }

    #[test]
    fn onbuild() {
        assert_eq!(
            kind("ONBUILD run echo hi"),
            Kind::Onbuild("RUN echo hi".into())
        );
        assert!(error("ONBUILD ONBUILD RUN x").contains("ONBUILD ONBUILD"));
        assert!(error("ONBUILD FROM x").contains("FROM isn't allowed"));
        assert!(error("ONBUILD MAINTAINER x").contains("MAINTAINER isn't allowed"));
        assert!(error("ONBUILD BOGUS x").contains("unknown instruction: BOGUS"));
    }

    #[test]
    fn healthcheck_forms() {
        assert_eq!(
            kind("HEALTHCHECK NONE"),
            Kind::Healthcheck(Health {
                test: strings(&["NONE"]),
                ..Health::default()
            })
        );
        assert_eq!(
            kind("HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --start-interval=2.5s --retries=3 CMD curl -f http://x/ || exit 1"),
            Kind::Healthcheck(Health {
                test: strings(&["CMD-SHELL", "curl -f http://x/ || exit 1"]),
                interval: Some(30_000_000_000),
                timeout: Some(90_000_000_000),
                start_period: Some(500_000_000),
                start_interval: Some(2_500_000_000),
                retries: Some(3),
            })
        );
        assert_eq!(
            kind(r#"HEALTHCHECK cmd ["/check", "-q"]"#),
            Kind::Healthcheck(Health {
                test: strings(&["CMD", "/check", "-q"]),
                ..Health::default()
            })
        );
        assert!(error("HEALTHCHECK --interval=soon CMD x").contains("invalid duration"));
        assert!(error("HEALTHCHECK --retries=-1 CMD x").contains("--retries"));
        assert!(error("HEALTHCHECK curl x").contains("try CMD"));
        assert!(error("HEALTHCHECK CMD").contains("requires a command"));
        assert!(error("HEALTHCHECK --interval=1s").contains("requires at least one argument"));
    }

    #[test]
    fn directives() {
        let df = parse("# syntax=docker/dockerfile:1\n#ESCAPE = `\nFROM x\n").unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));

        let df = parse(
            "# escape=`\nFROM mcr.microsoft.com/windows\nCOPY C:\\src\\app C:\\dst\\\nRUN dir `\n    c:\\ `\n    /s\n",
        )
        .unwrap();
        assert_eq!(df.instructions.len(), 3);
        assert_eq!(
            df.instructions[1].kind,
            Kind::Copy {
                sources: strings(&["C:\\src\\app"]),
                dest: "C:\\dst\\".into(),
                from: None,
                chown: None,
                chmod: None,
                heredocs: vec![]
            }
        );
        assert_eq!(df.instructions[2].text, "RUN dir     c:\\     /s");
        assert_eq!(df.instructions[2].line, 4);

        // After anything else a directive is just a comment.
        let df = parse("FROM x\n# escape=`\nRUN a \\\n b").unwrap();
        assert_eq!(df.escape, '\\');
        assert_eq!(df.instructions[1].text, "RUN a  b");
        let df = parse("# hello\n# escape=`\nFROM x").unwrap();
        assert_eq!(df.escape, '\\');

        assert!(error("# escape=x\nFROM a").starts_with("Dockerfile line 1: invalid escape"));
        assert!(error("# escape=`\n# escape=\\\nFROM a").contains("line 2"));
    }

    #[test]
    fn comments_and_blank_lines_in_continuations() {
        let df = parse(
            "# leading comment\n\nFROM x\n  # indented comment\nRUN apt-get update && \\\n# inside\n\n    apt-get install -y \\\n  curl\n",
        )
        .unwrap();
        assert_eq!(df.instructions.len(), 2);
        assert_eq!(df.instructions[1].line, 5);
        assert_eq!(
            df.instructions[1].text,
            "RUN apt-get update &&     apt-get install -y   curl"
        );
        // Ending the file mid-continuation is fine.
        assert_eq!(one("RUN echo \\").text, "RUN echo");
        // CRLF line ends.
        assert_eq!(one("RUN a \\\r\n b\r\n").text, "RUN a  b");
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            error("FROM x\nRUN true\nFOO bar\n"),
            "Dockerfile line 3: unknown instruction: FOO"
        );
        assert_eq!(
            error("FROM x\nRUN --foo=1 true"),
            "Dockerfile line 2: unknown flag: --foo (for RUN)"
        );
        assert_eq!(
            error("FROM x\n\nRUN --mount=type=cache,target=/x true"),
            "Dockerfile line 3: RUN --mount is not supported"
        );
        assert!(error("RUN --security=insecure x").contains("RUN --security is not supported"));
        assert!(error("RUN --network=bridge x").contains("--network"));
        assert!(error("ENV --x=1 A=b").contains("unknown flag: --x"));
        assert_eq!(
            error("FROM x\nWORKDIR"),
            "Dockerfile line 2: WORKDIR requires at least one argument"
        );
    }

    #[test]
    fn run_heredocs() {
        let df = parse("FROM x\nRUN <<EOF\napt-get update\n  echo $HOME\nEOF\nUSER me\n").unwrap();
        assert_eq!(df.instructions.len(), 3);
        assert_eq!(df.instructions[1].text, "RUN <<EOF");
        assert_eq!(
            df.instructions[1].kind,
            Kind::Run {
                command: Command::Shell("apt-get update\n  echo $HOME\n".into()),
                network: None
            }
        );
        assert_eq!(df.instructions[2].line, 6);

        let ins = one("RUN cat <<EOF > /f\n# not a comment\nline \\\nEOF\n");
        assert_eq!(ins.text, "RUN cat <<EOF > /f");
        assert_eq!(
            ins.kind,
            Kind::Run {
                command: Command::Shell("cat <<EOF > /f\n# not a comment\nline \\\nEOF".into()),
                network: None
            }
        );

        let ins = one("RUN cat <<A <<-'B' > /f\na\nA\n\tb\n\tB\n");
        assert_eq!(
            ins.kind,
            Kind::Run {
                command: Command::Shell("cat <<A <<-'B' > /f\na\nA\n\tb\n\tB".into()),
                network: None
            }
        );
        assert!(error("RUN <<EOF\nno end\n").contains("unterminated heredoc"));
    }

    #[test]
    fn copy_heredocs() {
        let df = parse(
            "FROM x\nCOPY <<-EOF <<'RAW' /dest/\n\thello $A\n\t\tindented\n\tEOF\nkeep $A\nRAW\nCMD x\n",
        )
        .unwrap();
        assert_eq!(df.instructions.len(), 3);
        assert_eq!(
            df.instructions[1].kind,
            Kind::Copy {
                sources: strings(&["EOF", "RAW"]),
                dest: "/dest/".into(),
                from: None,
                chown: None,
                chmod: None,
                heredocs: vec![
                    Heredoc {
                        name: "EOF".into(),
                        body: "hello $A\nindented\n".into(),
                        expand: true
                    },
                    Heredoc {
                        name: "RAW".into(),
                        body: "keep $A\n".into(),
                        expand: false
                    },
                ]
            }
        );
        let Kind::Add { heredocs, .. } = kind("ADD <<\"X\" /f\nbody\nX") else {
            panic!("not ADD");
        };
        assert!(!heredocs[0].expand);
    }

    #[test]
    fn split_words_keeps_quotes() {
        assert_eq!(
            split_words(r#" a "b c" 'd e'f g\ h "i\" j" "#, '\\'),
            strings(&["a", "\"b c\"", "'d e'f", "g\\ h", "\"i\\\" j\""])
        );
        assert_eq!(split_words("a` b c", '`'), strings(&["a` b", "c"]));
        assert!(split_words("   ", '\\').is_empty());
    }

    #[test]
    fn expansion() {
        assert_eq!(vars("$A-${B}").unwrap(), "a-b");
        assert_eq!(vars("${A:-x}${Z:-x}${E:-x}${E-x}").unwrap(), "axx");
        assert_eq!(vars("${Z-x}").unwrap(), "x");
        assert_eq!(
            vars("[${A:+y}][${E:+y}][${E+y}][${Z+y}]").unwrap(),
            "[y][][y][]"
        );
        assert_eq!(vars("'$A'").unwrap(), "$A");
        assert_eq!(vars("\"$A b\"").unwrap(), "a b");
        assert_eq!(vars("\\$A").unwrap(), "$A");
        assert_eq!(vars("\"\\$A \\n\"").unwrap(), "$A \\n");
        assert_eq!(vars("${Z:-$B}").unwrap(), "b");
        assert_eq!(vars("${Z:-\"x}y\"}").unwrap(), "x}y");
        assert_eq!(vars("$Z|$ |$").unwrap(), "|$ |$");
        assert_eq!(vars("${A:?need A}").unwrap(), "a");
        assert_eq!(vars("${Z:?need Z}").unwrap_err().0, "Z: need Z");
        assert!(vars("${E:?}").is_err());
        assert_eq!(vars("${E?}").unwrap(), "");
        assert!(vars("'open").is_err());
        assert!(vars("\"open").is_err());
        assert!(vars("${A").is_err());
        assert!(vars("${A/x/y}").is_err());
        let tick = expand("`$A${A}", '`', &|_| Some("v".into())).unwrap();
        assert_eq!(tick, "$Av");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("1h"), Some(3_600_000_000_000));
        assert_eq!(parse_duration("2.5s"), Some(2_500_000_000));
        assert_eq!(parse_duration(".5s"), Some(500_000_000));
        assert_eq!(parse_duration("10us"), Some(10_000));
        assert_eq!(parse_duration("10µs"), Some(10_000));
        assert_eq!(parse_duration("7ns"), Some(7));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("1.000000001s"), Some(1_000_000_001));
        for bad in [
            "",
            "10",
            "s",
            "-1s",
            "1x",
            "1.2.3s",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
