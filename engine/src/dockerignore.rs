//! `.dockerignore` matching, following docker's rules (moby's ignorefile and
//! patternmatcher): Go `filepath.Match` syntax per path segment plus `**` for
//! any number of segments, `!` exceptions, and the last matching pattern
//! deciding whether a path (or any of its parent directories) is excluded.

#[derive(Debug, Clone)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    exception: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `*`: any run of non-`/` chars.
    Star,
    /// `?`: one non-`/` char.
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` ending the pattern: anything at all.
    DeepTail,
    /// `**` (its `/` eaten) before more pattern: zero or more whole segments.
    DeepDirs,
}

impl Ignore {
    /// Patterns from a .dockerignore file's text: one per line, `#` comment lines and blank lines skipped, whitespace trimmed, `!` prefix for an exception, each pattern cleaned like Go's filepath.Clean and a leading `/` dropped (docker's rules). An invalid pattern (Go's ErrBadPattern: unclosed `[`, trailing escape) is an error naming it.
    pub fn parse(text: &str) -> Result<Ignore, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for line in text.lines() {
            // Docker checks for `#` before trimming, so an indented `#` is a pattern.
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(
                        "invalid .dockerignore pattern \"!\": illegal exclusion pattern"
                            .to_string(),
                    );
                }
            }
            let mut cleaned = clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let tokens = compile(&cleaned)
                .map_err(|e| format!("invalid .dockerignore pattern {:?}: {e}", line.trim()))?;
            patterns.push(Pattern { exception, tokens });
        }
        Ok(Ignore { patterns })
    }

    /// Whether the context path `rel` (relative, `/`-separated, no leading `./`) is excluded: the last pattern that matches `rel` or any of its parent directories decides (an exception un-excludes), as moby's patternmatcher MatchesOrParentMatches.
    pub fn excluded(&self, rel: &str) -> bool {
        let path: Vec<char> = relative(rel).chars().collect();
        let parents: Vec<usize> = path
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == '/')
            .map(|(at, _)| at)
            .collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            let hit = matches(&pattern.tokens, &path, false)
                || parents
                    .iter()
                    .any(|&end| matches(&pattern.tokens, &path[..end], false));
            if hit {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// Whether a walk must still descend into excluded directory `rel`: some exception pattern could match a path below it.
    pub fn may_include_below(&self, rel: &str) -> bool {
        let dir = relative(rel);
        let mut exceptions = self.patterns.iter().filter(|p| p.exception);
        if dir == "." {
            return exceptions.count() > 0;
        }
        let mut prefix: Vec<char> = dir.chars().collect();
        prefix.push('/');
        exceptions.any(|p| matches(&p.tokens, &prefix, true))
    }
}

/// Whether context path `path` matches `pattern` by the same rules (COPY's and ADD's
/// source globs).
pub fn glob_matches(pattern: &str, path: &str) -> Result<bool, String> {
    let tokens = compile(pattern)?;
    let s: Vec<char> = path.chars().collect();
    Ok(matches(&tokens, &s, false))
}

fn relative(rel: &str) -> String {
    let cleaned = clean(rel);
    match cleaned.strip_prefix('/') {
        Some("") => ".".to_string(),
        Some(r) => r.to_string(),
        None => cleaned,
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                // `..` above the root is the root; above a relative start it stays.
                _ if rooted => {}
                _ => parts.push(".."),
            },
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

fn compile(pattern: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        at += 1;
        match c {
            '*' if chars.get(at) == Some(&'*') => {
                at += 1;
                if chars.get(at) == Some(&'/') {
                    at += 1;
                }
                tokens.push(if at >= chars.len() {
                    Token::DeepTail
                } else {
                    Token::DeepDirs
                });
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::Any),
            '\\' => match chars.get(at) {
                Some(&next) => {
                    tokens.push(Token::Literal(next));
                    at += 1;
                }
                None => return Err("trailing escape".to_string()),
            },
            '[' => {
                let (token, next) = class(&chars, at)?;
                tokens.push(token);
                at = next;
            }
            c => tokens.push(Token::Literal(c)),
        }
    }
    Ok(tokens)
}

/// A character class starting after its `[`; Go's rules for what is malformed.
fn class(chars: &[char], mut at: usize) -> Result<(Token, usize), String> {
    let negated = matches!(chars.get(at), Some('^' | '!'));
    if negated {
        at += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(at) == Some(&']') && !ranges.is_empty() {
            return Ok((Token::Class { negated, ranges }, at + 1));
        }
        let (lo, next) = class_char(chars, at)?;
        at = next;
        let hi = if chars.get(at) == Some(&'-') {
            let (hi, next) = class_char(chars, at + 1)?;
            at = next;
            hi
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &[char], at: usize) -> Result<(char, usize), String> {
    match chars.get(at) {
        None => Err("unclosed character class".to_string()),
        Some('-' | ']') => Err("malformed character class".to_string()),
        Some('\\') => match chars.get(at + 1) {
            Some(&c) => Ok((c, at + 2)),
            None => Err("unclosed character class".to_string()),
        },
        Some(&c) => Ok((c, at + 1)),
    }
}

/// Whether `tokens` match all of `s`; with `partial`, whether they match some
/// path that starts with `s`.
fn matches(tokens: &[Token], s: &[char], partial: bool) -> bool {
    if partial && s.is_empty() {
        return true;
    }
    let Some((token, rest)) = tokens.split_first() else {
        return s.is_empty();
    };
    let first = s.first().copied();
    match token {
        Token::Literal(c) => first == Some(*c) && matches(rest, &s[1..], partial),
        Token::Any => matches!(first, Some(c) if c != '/') && matches(rest, &s[1..], partial),
        Token::Class { negated, ranges } => match first {
            Some(c) if c != '/' => {
                let inside = ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi);
                inside != *negated && matches(rest, &s[1..], partial)
            }
            _ => false,
        },
        Token::Star => {
            let mut at = 0;
            loop {
                if matches(rest, &s[at..], partial) {
                    return true;
                }
                if at >= s.len() || s[at] == '/' {
                    return false;
                }
                at += 1;
            }
        }
        Token::DeepTail => true,
        // Any prefix can be extended by whole segments, so a partial match always holds.
        Token::DeepDirs if partial => true,
        Token::DeepDirs => {
            matches(rest, s, false)
                || s.iter()
                    .enumerate()
                    .any(|(at, c)| *c == '/' && matches(rest, &s[at + 1..], false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn star_suffix() {
        let i = ignore("*.md");
        assert!(i.excluded("README.md"));
        assert!(!i.excluded("docs/README.md"));
        assert!(!i.excluded("README.mdx"));
    }

    #[test]
    fn double_star() {
        let i = ignore("**/*.go");
        assert!(i.excluded("main.go"));
        assert!(i.excluded("a/b/c.go"));
        assert!(!i.excluded("a/b/c.rs"));
        let i = ignore("a/**/b");
        assert!(i.excluded("a/b"));
        assert!(i.excluded("a/x/y/b"));
        assert!(i.excluded("a/x/b/file"));
        assert!(!i.excluded("a/xb"));
    }

    #[test]
    fn directory_and_children() {
        let i = ignore("docs");
        assert!(i.excluded("docs"));
        assert!(i.excluded("docs/a/b.txt"));
        assert!(!i.excluded("docsy"));
        let i = ignore("docs/**");
        assert!(!i.excluded("docs"));
        assert!(i.excluded("docs/a"));
        assert!(i.excluded("docs/a/b"));
    }

    #[test]
    fn exceptions() {
        let i = ignore("docs\n!docs/keep.md");
        assert!(i.excluded("docs"));
        assert!(i.excluded("docs/other.md"));
        assert!(!i.excluded("docs/keep.md"));
        assert!(i.may_include_below("docs"));
        assert!(!ignore("docs\n!src/x").may_include_below("docs"));
        assert!(ignore("vendor\n!**/*.go").may_include_below("vendor/x"));
        assert!(!ignore("docs").may_include_below("docs"));
        assert!(ignore("*\n!docs").may_include_below("."));
    }

    #[test]
    fn last_match_wins() {
        let i = ignore("*.txt\n!keep.txt\nkeep*");
        assert!(i.excluded("a.txt"));
        assert!(i.excluded("keep.txt"));
        let i = ignore("keep*\n*.txt\n!keep.txt");
        assert!(!i.excluded("keep.txt"));
        assert!(i.excluded("keepme"));
    }

    #[test]
    fn single_char_and_classes() {
        let i = ignore("temp?");
        assert!(i.excluded("temp1"));
        assert!(!i.excluded("temp"));
        assert!(!i.excluded("temp12"));
        let i = ignore("[a-c]*");
        assert!(i.excluded("apple"));
        assert!(i.excluded("cat/x"));
        assert!(!i.excluded("dog"));
        let i = ignore("[^a-c]x\n[!q]y\n\\*z");
        assert!(i.excluded("dx"));
        assert!(!i.excluded("ax"));
        assert!(i.excluded("ry"));
        assert!(!i.excluded("qy"));
        assert!(i.excluded("*z"));
        assert!(!i.excluded("az"));
    }

    #[test]
    fn cleaning() {
        let i = ignore("/build");
        assert!(i.excluded("build"));
        assert!(i.excluded("build/out"));
        assert!(ignore("./x").excluded("x"));
        let i = ignore("a/../b");
        assert!(i.excluded("b"));
        assert!(!i.excluded("a"));
        assert!(ignore("dir/").excluded("dir/f"));
        assert!(!ignore("! /secret").excluded("other"));
        assert!(ignore("x").excluded("./x"));
    }

    #[test]
    fn comments_and_blanks() {
        let i = ignore("# a comment\n\n   \n*.log\n  # not a comment\n");
        assert!(i.excluded("a.log"));
        assert!(!i.excluded("# a comment"));
        assert!(i.excluded("  # not a comment".trim()));
    }

    #[test]
    fn invalid_patterns() {
        let err = Ignore::parse("ok\n[abc").unwrap_err();
        assert!(err.contains("[abc"), "{err}");
        assert!(Ignore::parse("foo\\").is_err());
        assert!(Ignore::parse("[]").is_err());
        assert!(Ignore::parse("[a-]").is_err());
        assert!(Ignore::parse("!").is_err());
    }
}
