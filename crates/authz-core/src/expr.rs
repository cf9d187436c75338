//! Requirement expressions: permission keys combined with `&`, `|`, `!` and parentheses, plus
//! caller-supplied boolean context flags (`ctx.multibrand`) and the constants `true`/`false`.
//!
//! Expressions are parsed once (catalog actions at load, inline expressions per request) into a
//! tree whose leaves are dense [`PermId`]s and [`FlagId`]s: every name is resolved against the
//! catalog while parsing, so an unknown permission or an undeclared flag is a parse error, never
//! a leaf that evaluates to false. A pure conjunction of permissions also gets a bitset mask, so
//! the common case is decided with a few word operations.
//!
//! Longer than most: the last quarter is its unit tests, next to the parser they test.

use crate::permset::{PermId, PermSet};
use std::fmt;

/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4096;
/// Deepest nesting of parentheses and `!` accepted. The parser counts it before it recurses, so
/// hostile input is an error, never a stack overflow.
pub const MAX_EXPRESSION_DEPTH: usize = 32;

/// A syntax or resolution error, with the 1-based character position it was found at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct ExprError {
    pub position: usize,
    pub message: String,
}

/// Index of a declared context flag in its catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlagId(pub u16);

impl FlagId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The names an expression may use: permission keys (and aliases) and declared context flags.
pub trait Names {
    /// The permission a key or alias key names.
    fn permission(&self, key: &str) -> Option<PermId>;
    /// The declared context flag with this key (without `ctx.`).
    fn flag(&self, key: &str) -> Option<FlagId>;
    /// Every permission key, for "did you mean" hints (only read on the error path).
    fn permission_keys(&self) -> Vec<&str>;
    /// Every declared flag key, for hints (only read on the error path).
    fn flag_keys(&self) -> Vec<&str>;
}

#[derive(Debug, Clone)]
enum Node {
    Const(bool),
    Perm(PermId),
    Flag(FlagId),
    Not(Box<Spanned>),
    And(Vec<Spanned>),
    Or(Vec<Spanned>),
}

#[derive(Debug, Clone)]
struct Spanned {
    node: Node,
    /// Byte range of this part in the source, for explanations.
    start: usize,
    end: usize,
}

/// A parsed, resolved requirement expression.
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    root: Spanned,
    /// Set when the expression is a conjunction of permissions only.
    all_of: Option<PermSet>,
    perms: PermSet,
    flags: Vec<FlagId>,
}

/// The result of evaluating an expression for one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// A smallest set of permissions found that would make a failing expression pass, in
    /// catalog order. Empty when allowed, or when no permission can fix it (a context flag or
    /// a negation failed).
    pub missing: Vec<PermId>,
    /// The source text of each failing part (the failing conjuncts of the top level).
    pub failed_parts: Vec<String>,
}

impl Expr {
    /// Parses `source`, resolving every permission key and `ctx.` flag against `names`: an
    /// unknown key or an undeclared flag is an error that names it, with its position.
    pub fn parse(source: &str, names: &impl Names) -> Result<Expr, ExprError> {
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(ExprError {
                position: char_pos(source, MAX_EXPRESSION_LEN),
                message: format!(
                    "expression is {} bytes long; the limit is {MAX_EXPRESSION_LEN}",
                    source.len()
                ),
            });
        }
        let tokens = tokenize(source)?;
        let mut parser = Parser {
            source,
            tokens: &tokens,
            at: 0,
            depth: 0,
            names,
        };
        let root = parser.or()?;
        if let Some(tok) = tokens.get(parser.at) {
            return Err(parser.error_at(tok.start, format!("unexpected {}", tok.kind.describe())));
        }
        let mut perms = PermSet::new();
        let mut flags = Vec::new();
        collect(&root, &mut perms, &mut flags);
        let all_of = conjunction_mask(&root);
        Ok(Expr {
            source: source.to_owned(),
            root,
            all_of,
            perms,
            flags,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expression's words in order — operators, parentheses, `true`/`false`, `ctx.` flags —
    /// with each permission key or alias replaced by `name(key)`. Two expressions with the
    /// same words have the same structure: the same decisions and the same explanations.
    pub fn words(&self, name: &dyn Fn(&str) -> String) -> Vec<String> {
        let Ok(tokens) = tokenize(&self.source) else {
            return vec![self.source.clone()];
        };
        tokens
            .iter()
            .map(|t| {
                let text = &self.source[t.start..t.end];
                match t.kind {
                    TokKind::Ident
                        if !text.starts_with("ctx.") && text != "true" && text != "false" =>
                    {
                        name(text)
                    }
                    _ => text.to_owned(),
                }
            })
            .collect()
    }

    /// Every permission the expression mentions.
    pub fn permissions(&self) -> &PermSet {
        &self.perms
    }

    /// Every context flag the expression tests, each once, in order of first appearance.
    pub fn flags(&self) -> &[FlagId] {
        &self.flags
    }

    /// Decides the expression without allocating; use [`Expr::evaluate`] for the reasons.
    /// `flag` gives the value of each flag in [`Expr::flags`].
    pub fn holds(&self, has: &impl Fn(PermId) -> bool, flag: &impl Fn(FlagId) -> bool) -> bool {
        match &self.all_of {
            Some(mask) => mask.iter().all(has),
            None => holds(&self.root, has, flag),
        }
    }

    /// Decides the expression and, when it fails, says what is missing and which parts failed.
    pub fn evaluate(
        &self,
        has: &impl Fn(PermId) -> bool,
        flag: &impl Fn(FlagId) -> bool,
    ) -> Outcome {
        if self.holds(has, flag) {
            return Outcome {
                allowed: true,
                missing: Vec::new(),
                failed_parts: Vec::new(),
            };
        }
        // Report only a set that really fixes it: a failing negation or flag elsewhere, or a
        // negation that the added permissions would break, leaves nothing to report.
        let need = missing(&self.root, has, flag);
        let fixes = need.fixable && self.holds(&|p| has(p) || need.perms.contains(p), flag);
        let failing: Vec<&Spanned> = match &self.root.node {
            Node::And(children) => children.iter().filter(|c| !holds(c, has, flag)).collect(),
            _ => vec![&self.root],
        };
        Outcome {
            allowed: false,
            missing: if fixes {
                need.perms.iter().collect()
            } else {
                Vec::new()
            },
            failed_parts: failing
                .into_iter()
                .map(|s| self.source[s.start..s.end].trim().to_owned())
                .collect(),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn holds(s: &Spanned, has: &impl Fn(PermId) -> bool, flag: &impl Fn(FlagId) -> bool) -> bool {
    match &s.node {
        Node::Const(b) => *b,
        Node::Perm(p) => has(*p),
        Node::Flag(f) => flag(*f),
        Node::Not(inner) => !holds(inner, has, flag),
        Node::And(children) => children.iter().all(|c| holds(c, has, flag)),
        Node::Or(children) => children.iter().any(|c| holds(c, has, flag)),
    }
}

/// What a failing part needs. `fixable` is false when adding permissions cannot make it pass.
struct Need {
    perms: PermSet,
    fixable: bool,
}

fn missing(s: &Spanned, has: &impl Fn(PermId) -> bool, flag: &impl Fn(FlagId) -> bool) -> Need {
    let unfixable = || Need {
        perms: PermSet::new(),
        fixable: false,
    };
    if holds(s, has, flag) {
        return Need {
            perms: PermSet::new(),
            fixable: true,
        };
    }
    match &s.node {
        Node::Perm(p) => Need {
            perms: [*p].into_iter().collect(),
            fixable: true,
        },
        Node::Const(_) | Node::Flag(_) | Node::Not(_) => unfixable(),
        Node::And(children) => {
            let mut need = Need {
                perms: PermSet::new(),
                fixable: true,
            };
            for c in children {
                let n = missing(c, has, flag);
                need.perms.union_with(&n.perms);
                need.fixable &= n.fixable;
            }
            need
        }
        Node::Or(children) => {
            // Prefer the alternative that is fixable with the fewest permissions; the first wins
            // a tie, so the answer follows the order the catalog wrote.
            let needs: Vec<Need> = children.iter().map(|c| missing(c, has, flag)).collect();
            let best = needs
                .iter()
                .enumerate()
                .filter(|(_, n)| n.fixable)
                .min_by_key(|(i, n)| (n.perms.len(), *i))
                .map(|(i, _)| i);
            match best {
                Some(i) => needs.into_iter().nth(i).unwrap_or_else(unfixable),
                None => unfixable(),
            }
        }
    }
}

fn collect(s: &Spanned, perms: &mut PermSet, flags: &mut Vec<FlagId>) {
    match &s.node {
        Node::Const(_) => {}
        Node::Perm(p) => {
            perms.insert(*p);
        }
        Node::Flag(f) => {
            if !flags.contains(f) {
                flags.push(*f);
            }
        }
        Node::Not(inner) => collect(inner, perms, flags),
        Node::And(children) | Node::Or(children) => {
            for c in children {
                collect(c, perms, flags);
            }
        }
    }
}

fn conjunction_mask(s: &Spanned) -> Option<PermSet> {
    match &s.node {
        Node::Perm(p) => Some([*p].into_iter().collect()),
        Node::Const(true) => Some(PermSet::new()),
        Node::And(children) => {
            let mut mask = PermSet::new();
            for c in children {
                mask.union_with(&conjunction_mask(c)?);
            }
            Some(mask)
        }
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum TokKind {
    Ident,
    And,
    Or,
    Not,
    Open,
    Close,
}

impl TokKind {
    fn describe(&self) -> &'static str {
        match self {
            TokKind::Ident => "name",
            TokKind::And => "`&`",
            TokKind::Or => "`|`",
            TokKind::Not => "`!`",
            TokKind::Open => "`(`",
            TokKind::Close => "`)`",
        }
    }
}

struct Token {
    kind: TokKind,
    start: usize,
    end: usize,
}

fn char_pos(source: &str, byte: usize) -> usize {
    let byte = byte.min(source.len());
    source.char_indices().take_while(|(i, _)| *i < byte).count() + 1
}

fn tokenize(source: &str) -> Result<Vec<Token>, ExprError> {
    let mut tokens = Vec::new();
    let mut chars = source.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let single = match c {
            '&' => Some(TokKind::And),
            '|' => Some(TokKind::Or),
            '!' => Some(TokKind::Not),
            '(' => Some(TokKind::Open),
            ')' => Some(TokKind::Close),
            _ => None,
        };
        if let Some(kind) = single {
            if matches!(kind, TokKind::And | TokKind::Or)
                && chars.peek().map(|(_, n)| *n) == Some(c)
            {
                return Err(ExprError {
                    position: char_pos(source, i),
                    message: format!("`{c}{c}` is not an operator; write a single `{c}`"),
                });
            }
            tokens.push(Token {
                kind,
                start: i,
                end: i + 1,
            });
        } else if c.is_whitespace() {
            continue;
        } else if is_ident_char(c) {
            let mut end = i + c.len_utf8();
            while let Some(&(j, n)) = chars.peek() {
                if !is_ident_char(n) {
                    break;
                }
                end = j + n.len_utf8();
                chars.next();
            }
            tokens.push(Token {
                kind: TokKind::Ident,
                start: i,
                end,
            });
        } else {
            return Err(ExprError {
                position: char_pos(source, i),
                message: format!(
                    "unexpected character {c:?}; expressions use permission keys, ctx.FLAG, `&`, `|`, `!` and parentheses"
                ),
            });
        }
    }
    Ok(tokens)
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

struct Parser<'a, N: Names> {
    source: &'a str,
    tokens: &'a [Token],
    at: usize,
    depth: usize,
    names: &'a N,
}

impl<N: Names> Parser<'_, N> {
    fn error_at(&self, byte: usize, message: String) -> ExprError {
        ExprError {
            position: char_pos(self.source, byte),
            message,
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn end_error(&self, what: &str) -> ExprError {
        self.error_at(
            self.source.len(),
            format!("expression ends where {what} was expected"),
        )
    }

    fn enter(&mut self, byte: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_EXPRESSION_DEPTH {
            return Err(self.error_at(
                byte,
                format!("expression nests deeper than {MAX_EXPRESSION_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Spanned, ExprError> {
        self.list(TokKind::Or, Self::and, Node::Or)
    }

    fn and(&mut self) -> Result<Spanned, ExprError> {
        self.list(TokKind::And, Self::unary, Node::And)
    }

    fn list(
        &mut self,
        op: TokKind,
        next: fn(&mut Self) -> Result<Spanned, ExprError>,
        build: fn(Vec<Spanned>) -> Node,
    ) -> Result<Spanned, ExprError> {
        let first = next(self)?;
        let mut items = vec![first];
        while self.peek().is_some_and(|t| t.kind == op) {
            self.at += 1;
            items.push(next(self)?);
        }
        if items.len() == 1 {
            return Ok(items.remove(0));
        }
        let start = items[0].start;
        let end = items[items.len() - 1].end;
        Ok(Spanned {
            node: build(items),
            start,
            end,
        })
    }

    fn unary(&mut self) -> Result<Spanned, ExprError> {
        let Some(tok) = self.peek() else {
            return Err(self.end_error("a permission, `!` or `(`"));
        };
        let (start, end, kind) = (tok.start, tok.end, tok.kind.clone());
        match kind {
            TokKind::Not => {
                self.at += 1;
                self.enter(start)?;
                let inner = self.unary()?;
                self.depth -= 1;
                let end = inner.end;
                Ok(Spanned {
                    node: Node::Not(Box::new(inner)),
                    start,
                    end,
                })
            }
            TokKind::Open => {
                self.at += 1;
                self.enter(start)?;
                let inner = self.or()?;
                self.depth -= 1;
                match self.peek() {
                    Some(t) if t.kind == TokKind::Close => {
                        let end = t.end;
                        self.at += 1;
                        Ok(Spanned {
                            node: inner.node,
                            start,
                            end,
                        })
                    }
                    Some(t) => Err(self.error_at(
                        t.start,
                        format!(
                            "expected `)` to close the `(` at position {}, found {}",
                            char_pos(self.source, start),
                            t.kind.describe()
                        ),
                    )),
                    None => Err(self.error_at(
                        self.source.len(),
                        format!(
                            "missing `)` to close the `(` at position {}",
                            char_pos(self.source, start)
                        ),
                    )),
                }
            }
            TokKind::Ident => {
                self.at += 1;
                let text = &self.source[start..end];
                let node = self.leaf(text, start)?;
                Ok(Spanned { node, start, end })
            }
            other => Err(self.error_at(
                start,
                format!(
                    "expected a permission, `!` or `(`, found {}",
                    other.describe()
                ),
            )),
        }
    }

    fn leaf(&self, text: &str, start: usize) -> Result<Node, ExprError> {
        match text {
            "true" => return Ok(Node::Const(true)),
            "false" => return Ok(Node::Const(false)),
            "and" | "or" | "not" | "AND" | "OR" | "NOT" => {
                return Err(self.error_at(
                    start,
                    format!("`{text}` is not an operator; use `&`, `|` and `!`"),
                ));
            }
            _ => {}
        }
        if let Some(flag) = text.strip_prefix("ctx.") {
            if flag.is_empty() || !crate::key::is_valid_key(flag) {
                return Err(self.error_at(
                    start,
                    format!(
                        "context flag `{text}` must be `ctx.` followed by a key of a-z, 0-9 and `_`"
                    ),
                ));
            }
            return match self.names.flag(flag) {
                Some(f) => Ok(Node::Flag(f)),
                None => Err(self.error_at(start, self.undeclared_flag(flag))),
            };
        }
        if let Some(p) = self.names.permission(text) {
            return Ok(Node::Perm(p));
        }
        Err(self.error_at(start, self.unknown_permission(text)))
    }

    /// "undeclared context flag" with the closest declared flag, or the declared ones.
    fn undeclared_flag(&self, flag: &str) -> String {
        let declared = self.names.flag_keys();
        let hint = if let Some(close) = crate::key::closest(flag, declared.iter().copied()) {
            format!("did you mean `ctx.{close}`?")
        } else if self.names.permission(flag).is_some() {
            format!("`{flag}` is a permission: write it without `ctx.`")
        } else if declared.is_empty() {
            "the catalog declares no context flags".to_owned()
        } else {
            const SHOWN: usize = 20;
            let mut list = declared[..declared.len().min(SHOWN)].join(", ");
            if declared.len() > SHOWN {
                list.push_str(&format!(" and {} more", declared.len() - SHOWN));
            }
            format!("the catalog declares: {list}")
        };
        format!("undeclared context flag `ctx.{flag}`; {hint}")
    }

    /// "unknown permission" with the key rule's spelling, a close key, or a flag of that name.
    fn unknown_permission(&self, text: &str) -> String {
        let by_rule = crate::key::key_from_name(text);
        let hint = if by_rule != text && self.names.permission(&by_rule).is_some() {
            Some(format!("did you mean `{by_rule}`?"))
        } else if self.names.flag(text).is_some() {
            Some(format!("`{text}` is a context flag: write `ctx.{text}`"))
        } else {
            crate::key::closest(&by_rule, self.names.permission_keys())
                .map(|k| format!("did you mean `{k}`?"))
        };
        match hint {
            Some(h) => format!("unknown permission `{text}`; {h}"),
            None => format!("unknown permission `{text}`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &["a", "b", "c", "d", "view_brands", "edit_flows"];
    const FLAGS: &[&str] = &["m", "x", "f", "multibrand"];

    fn resolve(k: &str) -> Option<PermId> {
        KEYS.iter().position(|x| *x == k).map(|i| PermId(i as u16))
    }

    struct TestNames;

    impl Names for TestNames {
        fn permission(&self, key: &str) -> Option<PermId> {
            resolve(key)
        }
        fn flag(&self, key: &str) -> Option<FlagId> {
            FLAGS
                .iter()
                .position(|x| *x == key)
                .map(|i| FlagId(i as u16))
        }
        fn permission_keys(&self) -> Vec<&str> {
            KEYS.to_vec()
        }
        fn flag_keys(&self) -> Vec<&str> {
            FLAGS.to_vec()
        }
    }

    fn parse(s: &str) -> Result<Expr, ExprError> {
        Expr::parse(s, &TestNames)
    }

    /// Evaluates `expr` for a subject holding `held`, with the flags in `flags` true and every
    /// other flag false.
    fn eval(expr: &str, held: &[&str], flags: &[&str]) -> (bool, Vec<&'static str>) {
        let e = parse(expr).unwrap();
        let held: PermSet = held.iter().map(|k| resolve(k).unwrap()).collect();
        let has = |p: PermId| held.contains(p);
        let flag = |f: FlagId| flags.contains(&FLAGS[f.index()]);
        let out = e.evaluate(&has, &flag);
        assert_eq!(
            out.allowed,
            e.holds(&has, &flag),
            "holds and evaluate agree on {expr}"
        );
        (
            out.allowed,
            out.missing.iter().map(|p| KEYS[p.index()]).collect(),
        )
    }

    fn check(expr: &str, held: &[&str], flags: &[&str], allowed: bool, missing: &[&str]) {
        assert_eq!(
            eval(expr, held, flags),
            (allowed, missing.to_vec()),
            "{expr} with {held:?} and flags {flags:?}"
        );
    }

    /// Found by fuzzing (`view_reports & !(view_flows | !ctx.multibrand)`): a failing negation
    /// beside a missing permission used to report the permission, which fixes nothing.
    #[test]
    fn missing_is_only_reported_when_it_fixes_the_check() {
        check("a & !(b | !ctx.m)", &["b"], &[], false, &[]);
        check("a & !(b | !ctx.m)", &["a"], &["m"], true, &[]);
        check("a & !(b | !ctx.m)", &[], &[], false, &[]);
        check("a & !b", &[], &[], false, &["a"]);
        // Adding the missing permission would break the negation beside it.
        check("b & !b", &[], &[], false, &[]);
        check("(b | c) & !b", &[], &[], false, &[]);
    }

    #[test]
    fn evaluation_table() {
        check("a", &["a"], &[], true, &[]);
        check("a", &[], &[], false, &["a"]);
        check("a & b", &["a"], &[], false, &["b"]);
        check("a & b & c", &[], &[], false, &["a", "b", "c"]);
        check("a | b", &[], &[], false, &["a"]);
        check("a | b", &["b"], &[], true, &[]);
        check("a & (b | c & d)", &["a", "c"], &[], false, &["b"]);
        check("a & (b & c | d)", &["a"], &[], false, &["d"]);
        check("!a", &[], &[], true, &[]);
        check("!a", &["a"], &[], false, &[]);
        check("!!a", &["a"], &[], true, &[]);
        check("true", &[], &[], true, &[]);
        check("false | a", &[], &[], false, &["a"]);
        // Context flags.
        check(
            "edit_flows & (!ctx.multibrand | view_brands)",
            &["edit_flows"],
            &[],
            true,
            &[],
        );
        check(
            "edit_flows & (!ctx.multibrand | view_brands)",
            &["edit_flows"],
            &["multibrand"],
            false,
            &["view_brands"],
        );
        check("ctx.x & a", &["a"], &[], false, &[]);
        // No grant makes it pass while the flag is false: nothing is reported missing.
        check("ctx.x & a", &[], &[], false, &[]);
        check("ctx.x & a", &[], &["x"], false, &["a"]);
        check("ctx.x", &[], &["x"], true, &[]);
    }

    #[test]
    fn failed_parts_name_the_failing_conjuncts() {
        let e = parse("a & (b | c) & ctx.f").unwrap();
        let out = e.evaluate(&|p: PermId| p.0 == 0, &|_: FlagId| false);
        assert_eq!(out.failed_parts, vec!["(b | c)", "ctx.f"]);
    }

    #[test]
    fn flags_resolve_to_declared_ids() {
        let e = parse("ctx.multibrand & (a | !ctx.m) & ctx.multibrand").unwrap();
        assert_eq!(e.flags(), [FlagId(3), FlagId(0)]);
    }

    #[test]
    fn conjunctions_get_a_mask() {
        assert!(parse("a & b & (c & d)").unwrap().all_of.is_some());
        assert!(parse("a | b").unwrap().all_of.is_none());
        assert!(parse("a & ctx.x").unwrap().all_of.is_none());
    }

    fn error(s: &str) -> ExprError {
        parse(s).expect_err(s)
    }

    #[test]
    fn errors_name_the_problem_and_position() {
        let cases: &[(&str, usize, &str)] = &[
            ("a & nope", 5, "unknown permission `nope`"),
            ("a &", 4, "expression ends where a permission"),
            ("", 1, "expression ends where"),
            ("(a | b", 7, "missing `)` to close the `(` at position 1"),
            ("a b", 3, "unexpected name"),
            ("a && b", 3, "`&&` is not an operator"),
            ("a # b", 3, "unexpected character '#'"),
            ("a and b", 3, "unexpected name"),
            ("and", 1, "`and` is not an operator"),
            ("ctx.", 1, "context flag `ctx.`"),
            ("ctx.Bad", 1, "context flag `ctx.Bad`"),
            (
                "a & !ctx.anything",
                6,
                "undeclared context flag `ctx.anything`; the catalog declares: m, x, f, multibrand",
            ),
            (
                "edit_flows & (!ctx.multibrnad | view_brands)",
                16,
                "undeclared context flag `ctx.multibrnad`; did you mean `ctx.multibrand`?",
            ),
            (
                "ctx.edit_flows",
                1,
                "`edit_flows` is a permission: write it without `ctx.`",
            ),
            (
                "a & multibrand",
                5,
                "`multibrand` is a context flag: write `ctx.multibrand`",
            ),
            ("View_Brands", 1, "did you mean `view_brands`"),
            ("view_brnads", 1, "did you mean `view_brands`"),
            ("a | )", 5, "found `)`"),
        ];
        for (src, pos, msg) in cases {
            let e = error(src);
            assert_eq!(e.position, *pos, "position for {src:?}: {e}");
            assert!(e.message.contains(msg), "message for {src:?}: {e}");
        }
    }

    #[test]
    fn hostile_input_is_an_error_not_a_crash() {
        let deep = format!("{}a{}", "(".repeat(5000), ")".repeat(5000));
        assert!(error(&deep).message.contains("limit is 4096"));
        let deep_short = format!("{}a{}", "(".repeat(2000), ")".repeat(2000));
        assert!(error(&deep_short).message.contains("nests deeper than 32"));
        let nots = format!("{}a", "!".repeat(4000));
        assert!(error(&nots).message.contains("nests deeper than 32"));
        let at_limit = format!("{}a{}", "(".repeat(32), ")".repeat(32));
        assert!(parse(&at_limit).is_ok());
        let wide = vec!["a"; 1000].join("|");
        assert!(parse(&wide).is_ok());
    }
}
