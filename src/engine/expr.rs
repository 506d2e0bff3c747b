//! Expressions: a subset of JUEL for sequence-flow conditions, input/output mappings, the
//! `camunda:topic` / `camunda:taskPriority` attributes of external tasks, timer definitions
//! (`timers::spec`) and the assignment and date attributes of user tasks (`bpmn::waits`).
//!
//! Supported: variables and property access on `Json` (and JSON-format `Object`) variables
//! (`${order.total}`), string / number / boolean / null literals, `!` `-` `empty` prefixes,
//! `* / % + -` (also `div` `mod`), comparisons `== != < > <= >=` (also `eq ne lt gt le ge`),
//! `&& ||` (also `and or not`), `a ? b : c`, and parentheses. Numbers follow JUEL: integers are
//! `Long`, anything with a fraction is `Double`, `/` always divides as `Double`; `+` adds numbers
//! (JUEL has no string `+`). Text with embedded `${…}` ("Hello ${name}") is a *composite*
//! expression and yields a String; text without `${…}` is a String literal; `${var}` alone yields
//! the variable's own typed value. An unknown variable fails like Camunda's
//! `PropertyNotFoundException`.
//!
//! ```text
//! text ──lex──► tokens ──parse (depth ≤ MAX_DEPTH)──► Node tree ──eval (iterative chains)──► Val
//! ```
//! Hostile input cannot exhaust the stack: the parser refuses nesting (parentheses, ternaries,
//! prefix operators) deeper than [`MAX_DEPTH`] at deployment, and runs of one operator
//! (`a || b || …`, `1 + 2 + …`) are kept as flat chains that parse and evaluate in a loop.
//! `proptest_expressions` in the tests feeds random text through parse and eval; run it longer
//! with `PROPTEST_CASES=100000 cargo test --lib engine::expr::tests::proptest`.

use serde_json::{Map, Value};

use super::variables::{TypedValue, VarMap, VarType};

/// The deepest nesting of parentheses, ternaries and prefix operators an expression may have;
/// deeper expressions are refused when they are parsed (at deployment), never evaluated.
pub(crate) const MAX_DEPTH: usize = 32;

/// The longest expression text quoted in an error message.
const QUOTE_LIMIT: usize = 120;

/// Why an expression could not be parsed or evaluated.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ExprError {
    /// Bad syntax, or nesting deeper than [`MAX_DEPTH`].
    #[error("Error parsing '{expr}': {reason}")]
    Syntax { expr: String, reason: String },
    /// A variable or property that does not exist (`PropertyNotFoundException`).
    #[error(
        "Unknown property used in expression: {expr}. Cause: Cannot resolve identifier '{name}'"
    )]
    Unknown { expr: String, name: String },
    /// A value of the wrong kind for its operator.
    #[error("Cannot coerce '{value}' in expression {expr}: {reason}")]
    Coerce {
        expr: String,
        value: String,
        reason: &'static str,
    },
    /// Integer `%` by zero (Java's `ArithmeticException`).
    #[error("Error evaluating {expr}: / by zero")]
    DivideByZero { expr: String },
}

/// Expression text as quoted in messages: at most [`QUOTE_LIMIT`] characters.
fn quote(source: &str) -> String {
    if source.chars().count() <= QUOTE_LIMIT {
        source.to_owned()
    } else {
        let head: String = source.chars().take(QUOTE_LIMIT).collect();
        format!("{head}… ({} characters)", source.chars().count())
    }
}

/// A parsed condition (`${…}`), with its source text kept for messages.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    source: String,
    root: Node,
}

/// A parsed value expression: a literal text, `${…}`, or text with embedded `${…}`.
#[derive(Debug, Clone)]
pub(crate) struct Expression {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Eval(Node),
}

#[derive(Debug, Clone)]
enum Node {
    Lit(Val),
    /// A variable and the properties read from it.
    Path(String, Vec<String>),
    /// Prefix operators, outermost first, applied to an operand.
    Prefix(Vec<Prefix>, Box<Node>),
    /// A left-associative run of operators of one precedence level.
    Chain(Box<Node>, Vec<(Op, Node)>),
    /// `cond ? a : b`.
    Choose(Box<Node>, Box<Node>, Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Prefix {
    Not,
    Neg,
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// A runtime value inside an expression.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Bool(bool),
    /// A Java `Long` (integer literals, integer arithmetic, Integer/Long/Short variables).
    Int(i64),
    /// A Java `Double`.
    Num(f64),
    Str(String),
    Json(Value),
}

/// A value as the expression's author wrote or sees it (`maybe`, `12`, `null`), for messages.
impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Null => f.write_str("null"),
            Val::Bool(b) => write!(f, "{b}"),
            Val::Int(n) => write!(f, "{n}"),
            Val::Num(n) => f.write_str(&java_double(*n)),
            Val::Str(s) => f.write_str(s),
            Val::Json(v) => write!(f, "{v}"),
        }
    }
}

/// Java's `Double.toString` for the common cases (`2.0`, `0.5`, `1.0E10`, `NaN`, `Infinity`).
fn java_double(n: f64) -> String {
    if n.is_nan() {
        "NaN".to_owned()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else if n == n.trunc() && n.abs() < 1e7 {
        format!("{n:.1}")
    } else if n.abs() >= 1e-3 && n.abs() < 1e7 {
        format!("{n}")
    } else {
        let s = format!("{n:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_owned()
        } else {
            format!("{mantissa}.0")
        };
        format!("{mantissa}E{exp}")
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Int(i64),
    Str(String),
    Ident(String),
    Sym(&'static str),
}

/// Reads the body of one `${…}` starting at `chars[start]`; returns the node and the index just
/// past the closing `}`.
fn parse_body(chars: &[char], start: usize) -> Result<(Node, usize), String> {
    let (toks, end) = lex(chars, start)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let root = p.ternary()?;
    if p.pos != p.toks.len() {
        return Err("unexpected trailing input".to_owned());
    }
    Ok((root, end))
}

impl Condition {
    /// Parses `${…}` (or `#{…}`) text.
    pub(crate) fn parse(text: &str) -> Result<Condition, ExprError> {
        let source = text.trim().to_owned();
        let syntax = |reason: &str| ExprError::Syntax {
            expr: quote(&source),
            reason: reason.to_owned(),
        };
        let chars: Vec<char> = source.chars().collect();
        if !(source.starts_with("${") || source.starts_with("#{")) {
            return Err(syntax("expected an expression of the form ${...}"));
        }
        let (root, end) = parse_body(&chars, 2).map_err(|r| syntax(&r))?;
        if end != chars.len() {
            return Err(syntax("expected an expression of the form ${...}"));
        }
        Ok(Condition { source, root })
    }

    /// Evaluates the condition against the visible variables; it must yield a boolean.
    pub(crate) fn eval(&self, vars: &VarMap) -> Result<bool, ExprError> {
        let ev = Eval {
            source: &self.source,
            scopes: &[vars],
        };
        let v = ev.node(&self.root)?;
        ev.truth(&v)
    }
}

impl Expression {
    /// Parses a value: plain text (a String literal), `${…}`, or text with embedded `${…}`
    /// (`\${` is a literal `${`).
    pub(crate) fn parse(text: &str) -> Result<Expression, ExprError> {
        let source = text.to_owned();
        let chars: Vec<char> = text.chars().collect();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let opens = (c == '$' || c == '#') && chars.get(i + 1) == Some(&'{');
            if c == '\\'
                && matches!(chars.get(i + 1), Some('$' | '#'))
                && chars.get(i + 2) == Some(&'{')
            {
                literal.push(chars[i + 1]);
                literal.push('{');
                i += 3;
            } else if opens {
                let (node, end) =
                    parse_body(&chars, i + 2).map_err(|reason| ExprError::Syntax {
                        expr: quote(&source),
                        reason,
                    })?;
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Eval(node));
                i = end;
            } else {
                literal.push(c);
                i += 1;
            }
        }
        if !literal.is_empty() || parts.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Expression { source, parts })
    }

    /// The text as written in the model.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against variable scopes, innermost first: `${var}` alone keeps the variable's
    /// typed value, composite text yields a String, other results get JUEL's Java type
    /// (Long, Double, Boolean, String, null).
    pub(crate) fn value(&self, scopes: &[&VarMap]) -> Result<TypedValue, ExprError> {
        let ev = Eval {
            source: &self.source,
            scopes,
        };
        match self.parts.as_slice() {
            [Part::Eval(Node::Path(name, props))] if props.is_empty() => {
                ev.var(name).cloned().ok_or_else(|| ev.unknown(name))
            }
            [Part::Eval(node)] => Ok(typed(ev.node(node)?)),
            parts => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        Part::Text(t) => out.push_str(t),
                        Part::Eval(node) => match ev.node(node)? {
                            Val::Null => {}
                            other => out.push_str(&other.to_string()),
                        },
                    }
                }
                Ok(typed(Val::Str(out)))
            }
        }
    }
}

/// A value as a typed variable (the Java type JUEL would produce).
fn typed(v: Val) -> TypedValue {
    let (ty, value) = match v {
        Val::Null => (VarType::Null, Value::Null),
        Val::Bool(b) => (VarType::Boolean, Value::Bool(b)),
        Val::Int(i) => (VarType::Long, Value::from(i)),
        Val::Num(n) => (
            VarType::Double,
            serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
        ),
        Val::Str(s) => (VarType::String, Value::String(s)),
        Val::Json(j) => (VarType::Json, Value::String(j.to_string())),
    };
    TypedValue {
        ty,
        value,
        value_info: Map::new(),
        file: None,
    }
}

/// One evaluation: the source (for messages) and the variable scopes, innermost first.
struct Eval<'a> {
    source: &'a str,
    scopes: &'a [&'a VarMap],
}

impl Eval<'_> {
    fn var(&self, name: &str) -> Option<&TypedValue> {
        self.scopes.iter().find_map(|s| s.get(name))
    }

    fn unknown(&self, name: &str) -> ExprError {
        ExprError::Unknown {
            expr: quote(self.source),
            name: name.to_owned(),
        }
    }

    fn coerce(&self, v: &Val, reason: &'static str) -> ExprError {
        ExprError::Coerce {
            expr: quote(self.source),
            value: v.to_string(),
            reason,
        }
    }

    /// Evaluates a node. Recursion follows only the parse tree's nesting, which the parser
    /// bounds by [`MAX_DEPTH`]; chains are walked in a loop. Each kind of node has its own
    /// function so this recursive one keeps a small stack frame.
    fn node(&self, node: &Node) -> Result<Val, ExprError> {
        match node {
            Node::Lit(v) => Ok(v.clone()),
            Node::Path(name, props) => self.lookup(name, props),
            Node::Prefix(ops, operand) => self.prefix(ops, operand),
            Node::Choose(cond, yes, no) => self.choose(cond, yes, no),
            Node::Chain(first, rest) => self.chain(first, rest),
        }
    }

    #[inline(never)]
    fn prefix(&self, ops: &[Prefix], operand: &Node) -> Result<Val, ExprError> {
        let mut v = self.node(operand)?;
        for op in ops.iter().rev() {
            v = match op {
                Prefix::Not => Val::Bool(!self.truth(&v)?),
                Prefix::Neg => match self.arith_number(&v)? {
                    Val::Int(i) => Val::Int(i.wrapping_neg()),
                    Val::Num(n) => Val::Num(-n),
                    other => other,
                },
                Prefix::Empty => Val::Bool(match &v {
                    Val::Null => true,
                    Val::Str(s) => s.is_empty(),
                    Val::Json(Value::Array(a)) => a.is_empty(),
                    Val::Json(Value::Object(o)) => o.is_empty(),
                    _ => false,
                }),
            };
        }
        Ok(v)
    }

    #[inline(never)]
    fn choose(&self, cond: &Node, yes: &Node, no: &Node) -> Result<Val, ExprError> {
        if self.truth(&self.node(cond)?)? {
            self.node(yes)
        } else {
            self.node(no)
        }
    }

    #[inline(never)]
    fn chain(&self, first: &Node, rest: &[(Op, Node)]) -> Result<Val, ExprError> {
        let mut acc = self.node(first)?;
        for (op, rhs) in rest {
            acc = self.step(*op, acc, rhs)?;
            if let (Op::Or, Val::Bool(true)) | (Op::And, Val::Bool(false)) = (op, &acc) {
                return Ok(acc);
            }
        }
        Ok(acc)
    }

    /// One operator of a chain: `acc op rhs` (`||` / `&&` short-circuit).
    #[inline(never)]
    fn step(&self, op: Op, acc: Val, rhs: &Node) -> Result<Val, ExprError> {
        Ok(match op {
            Op::Or => {
                if self.truth(&acc)? {
                    return Ok(Val::Bool(true));
                }
                Val::Bool(self.truth(&self.node(rhs)?)?)
            }
            Op::And => {
                if !self.truth(&acc)? {
                    return Ok(Val::Bool(false));
                }
                Val::Bool(self.truth(&self.node(rhs)?)?)
            }
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod => {
                let rhs = self.node(rhs)?;
                self.arith(op, &acc, &rhs)?
            }
            cmp => {
                let rhs = self.node(rhs)?;
                Val::Bool(self.compare(cmp, &acc, &rhs)?)
            }
        })
    }

    fn lookup(&self, name: &str, props: &[String]) -> Result<Val, ExprError> {
        let var = self.var(name).ok_or_else(|| self.unknown(name))?;
        let mut val = from_typed(var);
        for prop in props {
            val = match val {
                Val::Json(Value::Object(mut map)) => map
                    .remove(prop)
                    .map(from_json)
                    .ok_or_else(|| self.unknown(prop))?,
                _ => return Err(self.unknown(prop)),
            };
        }
        Ok(val)
    }

    fn truth(&self, v: &Val) -> Result<bool, ExprError> {
        match v {
            Val::Bool(b) => Ok(*b),
            Val::Null => Ok(false),
            Val::Str(s) if s == "true" || s == "false" || s.is_empty() => Ok(s == "true"),
            other => Err(self.coerce(other, "not a boolean")),
        }
    }

    fn number(&self, v: &Val) -> Result<f64, ExprError> {
        match v {
            Val::Num(n) => Ok(*n),
            Val::Int(i) => Ok(*i as f64),
            Val::Null => Ok(0.0),
            Val::Str(s) => s.trim().parse().map_err(|_| self.coerce(v, "not a number")),
            other => Err(self.coerce(other, "not a number")),
        }
    }

    /// JUEL's coercion of an arithmetic operand: Long unless it is (or reads as) a Double.
    fn arith_number(&self, v: &Val) -> Result<Val, ExprError> {
        match v {
            Val::Int(_) | Val::Num(_) => Ok(v.clone()),
            Val::Null => Ok(Val::Int(0)),
            Val::Str(s) if s.is_empty() => Ok(Val::Int(0)),
            Val::Str(s) if s.contains(['.', 'e', 'E']) => s
                .trim()
                .parse()
                .map(Val::Num)
                .map_err(|_| self.coerce(v, "not a number")),
            Val::Str(s) => s
                .trim()
                .parse()
                .map(Val::Int)
                .map_err(|_| self.coerce(v, "not a number")),
            other => Err(self.coerce(other, "not a number")),
        }
    }

    fn arith(&self, op: Op, a: &Val, b: &Val) -> Result<Val, ExprError> {
        let (a, b) = (self.arith_number(a)?, self.arith_number(b)?);
        if let (Val::Int(x), Val::Int(y), false) = (&a, &b, op == Op::Div) {
            let (x, y) = (*x, *y);
            return Ok(Val::Int(match op {
                Op::Add => x.wrapping_add(y),
                Op::Sub => x.wrapping_sub(y),
                Op::Mul => x.wrapping_mul(y),
                _ if y == 0 => {
                    return Err(ExprError::DivideByZero {
                        expr: quote(self.source),
                    });
                }
                _ => x.wrapping_rem(y),
            }));
        }
        let (x, y) = (self.number(&a)?, self.number(&b)?);
        Ok(Val::Num(match op {
            Op::Add => x + y,
            Op::Sub => x - y,
            Op::Mul => x * y,
            Op::Div => x / y,
            _ => x % y,
        }))
    }

    fn compare(&self, op: Op, a: &Val, b: &Val) -> Result<bool, ExprError> {
        use std::cmp::Ordering;
        if matches!(op, Op::Eq | Op::Ne) {
            let equal = match (a, b) {
                (Val::Null, Val::Null) => true,
                (Val::Null, _) | (_, Val::Null) => false,
                (Val::Int(x), Val::Int(y)) => x == y,
                (Val::Num(_) | Val::Int(_), _) | (_, Val::Num(_) | Val::Int(_)) => {
                    self.number(a)? == self.number(b)?
                }
                (Val::Bool(_), _) | (_, Val::Bool(_)) => self.truth(a)? == self.truth(b)?,
                _ => a == b,
            };
            return Ok(equal == (op == Op::Eq));
        }
        let ord = match (a, b) {
            (Val::Str(x), Val::Str(y)) => x.cmp(y),
            (Val::Int(x), Val::Int(y)) => x.cmp(y),
            _ => self
                .number(a)?
                .partial_cmp(&self.number(b)?)
                .unwrap_or(Ordering::Equal),
        };
        Ok(match op {
            Op::Lt => ord == Ordering::Less,
            Op::Gt => ord == Ordering::Greater,
            Op::Le => ord != Ordering::Greater,
            _ => ord != Ordering::Less,
        })
    }
}

fn from_typed(v: &TypedValue) -> Val {
    from_json(v.json_document().unwrap_or_else(|| v.value.clone()))
}

fn from_json(v: Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Val::Str(s),
        other => Val::Json(other),
    }
}

/// Tokens of one `${…}` body starting at `chars[start]`, and the index just past its `}`.
fn lex(chars: &[char], start: usize) -> Result<(Vec<Tok>, usize), String> {
    const SYMS: [&str; 19] = [
        "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", ".", "-", "+", "*", "/", "%",
        "?", ":",
    ];
    let mut toks = Vec::new();
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '}' {
            return Ok((toks, i + 1));
        } else if c == '\'' || c == '"' {
            let mut out = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string literal".to_owned()),
                    Some('\\') => {
                        out.extend(chars.get(i + 1));
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        out.push(other);
                        i += 1;
                    }
                }
            }
            toks.push(Tok::Str(out));
        } else if c.is_ascii_digit() {
            let begin = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut float = false;
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                float = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if matches!(chars.get(i), Some('e' | 'E')) {
                let mut j = i + 1;
                if matches!(chars.get(j), Some('+' | '-')) {
                    j += 1;
                }
                if chars.get(j).is_some_and(char::is_ascii_digit) {
                    float = true;
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text: String = chars[begin..i].iter().collect();
            let bad = || format!("bad number '{text}'");
            toks.push(if float {
                Tok::Num(text.parse().map_err(|_| bad())?)
            } else {
                Tok::Int(text.parse().map_err(|_| bad())?)
            });
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let begin = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            toks.push(Tok::Ident(chars[begin..i].iter().collect()));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let sym = SYMS
                .iter()
                .find(|sym| rest.starts_with(**sym))
                .ok_or_else(|| format!("unexpected character '{c}'"))?;
            toks.push(Tok::Sym(sym));
            i += sym.len();
        }
    }
    Err("missing '}' at the end of the expression".to_owned())
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    /// Current nesting (parentheses, ternaries, prefix operators), at most [`MAX_DEPTH`].
    depth: usize,
}

/// Binary operator levels from loosest to tightest: (symbol, word, operator).
const LEVELS: [&[(&str, &str, Op)]; 6] = [
    &[("||", "or", Op::Or)],
    &[("&&", "and", Op::And)],
    &[("==", "eq", Op::Eq), ("!=", "ne", Op::Ne)],
    &[
        ("<=", "le", Op::Le),
        (">=", "ge", Op::Ge),
        ("<", "lt", Op::Lt),
        (">", "gt", Op::Gt),
    ],
    &[("+", "", Op::Add), ("-", "", Op::Sub)],
    &[
        ("*", "", Op::Mul),
        ("/", "div", Op::Div),
        ("%", "mod", Op::Mod),
    ],
];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat(&mut self, sym: &str, word: &str) -> bool {
        let hit = match self.peek() {
            Some(Tok::Sym(s)) => !sym.is_empty() && *s == sym,
            Some(Tok::Ident(w)) => !word.is_empty() && w == word,
            _ => false,
        };
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn deeper(&mut self, by: usize) -> Result<(), String> {
        self.depth += by;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "expression nested deeper than {MAX_DEPTH} levels (parentheses, '?:' and prefix operators), the procos engine's limit"
            ));
        }
        Ok(())
    }

    /// `cond ? a : b`, right-associative; each branch is one level deeper.
    fn ternary(&mut self) -> Result<Node, String> {
        let cond = self.binary()?;
        if !self.eat("?", "") {
            return Ok(cond);
        }
        self.deeper(1)?;
        let yes = self.ternary()?;
        if !self.eat(":", "") {
            return Err("missing ':' of '?:'".to_owned());
        }
        let no = self.ternary()?;
        self.depth -= 1;
        Ok(Node::Choose(Box::new(cond), Box::new(yes), Box::new(no)))
    }

    /// The binary operator at the cursor, with its precedence level, consumed.
    fn binary_op(&mut self) -> Option<(usize, Op)> {
        for (level, ops) in LEVELS.iter().enumerate() {
            for (sym, word, op) in ops.iter() {
                if self.eat(sym, word) {
                    return Some((level, *op));
                }
            }
        }
        None
    }

    /// All binary operators by precedence climbing with explicit stacks (no recursion per
    /// operator); runs of one level become one flat chain.
    fn binary(&mut self) -> Result<Node, String> {
        // Operands with the level of the chain they are (None: not a chain built here).
        let mut operands: Vec<(Node, Option<usize>)> = vec![(self.unary()?, None)];
        let mut ops: Vec<(usize, Op)> = Vec::new();
        while let Some((level, op)) = self.binary_op() {
            while ops.last().is_some_and(|(top, _)| *top >= level) {
                reduce(&mut operands, &mut ops);
            }
            ops.push((level, op));
            operands.push((self.unary()?, None));
        }
        while !ops.is_empty() {
            reduce(&mut operands, &mut ops);
        }
        Ok(operands.pop().map_or(Node::Lit(Val::Null), |(n, _)| n))
    }

    /// Prefix operators are read in a loop and kept as one list.
    fn unary(&mut self) -> Result<Node, String> {
        let mut ops = Vec::new();
        loop {
            let op = if self.eat("!", "not") {
                Prefix::Not
            } else if self.eat("-", "") {
                Prefix::Neg
            } else if self.eat("", "empty") {
                Prefix::Empty
            } else {
                break;
            };
            ops.push(op);
            self.deeper(1)?;
        }
        let operand = self.primary()?;
        self.depth -= ops.len();
        Ok(if ops.is_empty() {
            operand
        } else {
            Node::Prefix(ops, Box::new(operand))
        })
    }

    fn primary(&mut self) -> Result<Node, String> {
        let tok = self.peek().cloned().ok_or("unexpected end of expression")?;
        self.pos += 1;
        match tok {
            Tok::Num(n) => Ok(Node::Lit(Val::Num(n))),
            Tok::Int(n) => Ok(Node::Lit(Val::Int(n))),
            Tok::Str(s) => Ok(Node::Lit(Val::Str(s))),
            Tok::Sym("(") => {
                self.deeper(1)?;
                let inner = self.ternary()?;
                self.depth -= 1;
                if self.eat(")", "") {
                    Ok(inner)
                } else {
                    Err("missing ')'".to_owned())
                }
            }
            Tok::Ident(w) => match w.as_str() {
                "true" => Ok(Node::Lit(Val::Bool(true))),
                "false" => Ok(Node::Lit(Val::Bool(false))),
                "null" => Ok(Node::Lit(Val::Null)),
                _ => {
                    let mut props = Vec::new();
                    while self.eat(".", "") {
                        match self.peek().cloned() {
                            Some(Tok::Ident(p)) => {
                                self.pos += 1;
                                props.push(p);
                            }
                            _ => return Err("expected a property name after '.'".to_owned()),
                        }
                    }
                    if matches!(self.peek(), Some(Tok::Sym("("))) {
                        let name = std::iter::once(w.as_str())
                            .chain(props.iter().map(String::as_str))
                            .collect::<Vec<_>>()
                            .join(".");
                        return Err(format!(
                            "method and function calls ('{name}(…)') are not supported by the procos engine"
                        ));
                    }
                    Ok(Node::Path(w, props))
                }
            },
            Tok::Sym(s) => Err(format!("unexpected '{s}'")),
        }
    }
}

/// Joins the top two operands with the top operator, extending a chain of the same level.
fn reduce(operands: &mut Vec<(Node, Option<usize>)>, ops: &mut Vec<(usize, Op)>) {
    let (Some((level, op)), Some((rhs, _)), Some((lhs, lhs_level))) =
        (ops.pop(), operands.pop(), operands.pop())
    else {
        return;
    };
    let node = match lhs {
        Node::Chain(first, mut rest) if lhs_level == Some(level) => {
            rest.push((op, rhs));
            Node::Chain(first, rest)
        }
        other => Node::Chain(Box::new(other), vec![(op, rhs)]),
    };
    operands.push((node, Some(level)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::variables::check;
    use serde_json::json;

    fn vars(v: Value) -> VarMap {
        let map: std::collections::BTreeMap<String, Value> =
            serde_json::from_value(v).expect("map");
        map.into_iter()
            .map(|(k, v)| {
                let typed = check(&k, serde_json::from_value(v).expect("var")).expect("valid");
                (k, typed)
            })
            .collect()
    }

    fn eval(expr: &str, v: &VarMap) -> Result<bool, ExprError> {
        Condition::parse(expr).expect("parses").eval(v)
    }

    #[test]
    fn comparisons_and_logic_follow_juel() {
        let v = vars(json!({
            "status": {"value": "ok", "type": "String"},
            "n": {"value": 5, "type": "Integer"},
            "flag": {"value": true, "type": "Boolean"},
            "order": {"value": "{\"total\": 12, \"tags\": []}", "type": "Json"}
        }));
        assert!(eval("${status == 'ok'}", &v).expect("eval"));
        assert!(!eval("${status != 'ok'}", &v).expect("eval"));
        assert!(eval("${n > 3}", &v).expect("eval"));
        assert!(!eval("${n < 3}", &v).expect("eval"));
        assert!(eval("${n >= 5 && n <= 5}", &v).expect("eval"));
        assert!(eval("${flag}", &v).expect("eval"));
        assert!(!eval("${!flag}", &v).expect("eval"));
        assert!(eval("${n lt 3 or flag}", &v).expect("eval"));
        assert!(eval("${order.total gt 10 and empty order.tags}", &v).expect("eval"));
    }

    #[test]
    fn unknown_variables_and_bad_syntax_fail() {
        let v = VarMap::new();
        assert!(matches!(
            eval("${missing == 1}", &v),
            Err(ExprError::Unknown { .. })
        ));
        assert!(Condition::parse("status == 'ok'").is_err());
        assert!(Condition::parse("${a == }").is_err());
        assert!(Condition::parse("${(a == 1}").is_err());
    }

    fn value(text: &str, v: &VarMap) -> Result<(String, Value), ExprError> {
        let t = Expression::parse(text).expect("parses").value(&[v])?;
        Ok((t.ty.name().to_owned(), t.value))
    }

    #[test]
    fn expressions_yield_typed_values_like_juel() {
        let v = vars(json!({
            "name": {"value": "Ann", "type": "String"},
            "n": {"value": 5, "type": "Integer"},
            "d": {"value": "2025-01-23T14:42:45.000+0200", "type": "Date"},
            "order": {"value": "{\"total\": 12, \"lines\": {\"first\": \"tea\"}}", "type": "Json"}
        }));
        let ok = |text: &str| value(text, &v).expect(text);
        // ${var} alone keeps the variable's own type and value.
        assert_eq!(ok("${n}"), ("Integer".to_owned(), json!(5)));
        assert_eq!(ok("${d}").0, "Date");
        assert_eq!(ok("${order.total}"), ("Long".to_owned(), json!(12)));
        assert_eq!(
            ok("${order.lines.first}"),
            ("String".to_owned(), json!("tea"))
        );
        assert_eq!(ok("${order.lines}").0, "Json");
        // Literals and arithmetic: integers are Long, fractions Double, '/' divides as Double.
        assert_eq!(ok("${7}"), ("Long".to_owned(), json!(7)));
        assert_eq!(ok("${n * 2 + 1}"), ("Long".to_owned(), json!(11)));
        assert_eq!(ok("${n / 2}"), ("Double".to_owned(), json!(2.5)));
        assert_eq!(ok("${n mod 3 - -1}"), ("Long".to_owned(), json!(3)));
        assert_eq!(ok("${1.5 + '1'}"), ("Double".to_owned(), json!(2.5)));
        assert_eq!(
            ok("${n > 3 && name == 'Ann'}"),
            ("Boolean".to_owned(), json!(true))
        );
        assert_eq!(
            ok("${n > 9 ? 'big' : 'small'}"),
            ("String".to_owned(), json!("small"))
        );
        assert_eq!(ok("${null}"), ("Null".to_owned(), Value::Null));
        // Composite text is a String; null parts are empty; \${ is a literal.
        assert_eq!(
            ok("Hello ${name}!"),
            ("String".to_owned(), json!("Hello Ann!"))
        );
        assert_eq!(ok("${n}${n}"), ("String".to_owned(), json!("55")));
        assert_eq!(
            ok("a${null}b ${n / 2}"),
            ("String".to_owned(), json!("ab 2.5"))
        );
        assert_eq!(
            ok("costs \\${n}"),
            ("String".to_owned(), json!("costs ${n}"))
        );
        assert_eq!(
            ok("plain {text} $5"),
            ("String".to_owned(), json!("plain {text} $5"))
        );
        assert_eq!(ok("${'}'}"), ("String".to_owned(), json!("}")));
    }

    #[test]
    fn value_errors_name_the_expression_and_the_problem() {
        let v = vars(json!({"s": {"value": "x", "type": "String"}}));
        let err = value("Hi ${who}", &v).unwrap_err().to_string();
        assert_eq!(
            err,
            "Unknown property used in expression: Hi ${who}. Cause: Cannot resolve identifier 'who'"
        );
        let err = value("${s * 2}", &v).unwrap_err().to_string();
        assert_eq!(
            err,
            "Cannot coerce 'x' in expression ${s * 2}: not a number"
        );
        assert!(matches!(
            value("${5 % 0}", &v),
            Err(ExprError::DivideByZero { .. })
        ));
        let err = Expression::parse("${execution.getVariable('x')}").unwrap_err();
        assert!(
            err.to_string()
                .contains("('execution.getVariable(…)') are not supported"),
            "{err}"
        );
        for bad in ["${", "a ${b", "${a +}", "${a ? b}", "${(a}", "${1 2}"] {
            assert!(Expression::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    /// Runs `f` on a thread with a small stack, so unbounded recursion fails the test instead
    /// of hiding in the main thread's large stack.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no panic")
    }

    #[test]
    fn deeply_nested_parentheses_are_refused_not_a_stack_overflow() {
        let expr = format!("${{{}true{}}}", "(".repeat(2_100), ")".repeat(2_100));
        let err =
            on_small_stack(move || Condition::parse(&expr).map(|_| ())).expect_err("too deep");
        assert!(err.to_string().contains("nested deeper than"), "{err}");
    }

    #[test]
    fn thousands_of_leading_nots_are_refused_not_a_stack_overflow() {
        let expr = format!("${{{}true}}", "!".repeat(7_100));
        let err =
            on_small_stack(move || Condition::parse(&expr).map(|_| ())).expect_err("too deep");
        assert!(err.to_string().contains("nested deeper than"), "{err}");
    }

    #[test]
    fn expressions_at_the_depth_limit_parse_and_evaluate_on_a_small_stack() {
        let sum = format!(
            "${{{}1{}}}",
            "(1 + ".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        );
        let choose = format!(
            "${{{}0{}}}",
            "true ? (".repeat(MAX_DEPTH / 2),
            ") : 1".repeat(MAX_DEPTH / 2)
        );
        let (sum, choose) = on_small_stack(move || {
            let sum = Expression::parse(&sum).and_then(|e| e.value(&[]));
            let choose = Expression::parse(&choose).and_then(|e| e.value(&[]));
            (sum, choose)
        });
        assert_eq!(sum.expect("sum").value, json!(MAX_DEPTH));
        assert_eq!(choose.expect("choose").value, json!(0));
    }

    #[test]
    fn a_long_or_chain_evaluates_without_deep_recursion() {
        let expr = format!("${{{}true}}", "false || ".repeat(3_500));
        let holds = on_small_stack(move || {
            Condition::parse(&expr)
                .expect("a flat chain parses")
                .eval(&VarMap::new())
        });
        assert!(holds.expect("evaluates"));
    }

    #[test]
    fn a_value_that_cannot_be_coerced_is_quoted_as_written() {
        let v = vars(json!({"status": {"value": "maybe", "type": "String"}}));
        let err = eval("${status}", &v).unwrap_err().to_string();
        assert_eq!(
            err,
            "Cannot coerce 'maybe' in expression ${status}: not a boolean"
        );
    }

    /// Tokens that random expressions are built from: every operator, literals, variables
    /// (known and unknown), and the delimiters of composite text.
    const TOKENS: [&str; 44] = [
        "(",
        ")",
        "!",
        "not",
        "-",
        "+",
        "*",
        "/",
        "div",
        "%",
        "mod",
        "==",
        "!=",
        "<",
        ">",
        "<=",
        ">=",
        "eq",
        "lt",
        "&&",
        "||",
        "and",
        "or",
        "?",
        ":",
        "empty",
        ".",
        "true",
        "false",
        "null",
        "0",
        "7",
        "2.5",
        "1e3",
        "9223372036854775807",
        "'s'",
        "\"t\"",
        "a",
        "s",
        "j",
        "j.k",
        "missing",
        "${",
        "}",
    ];

    fn prop_vars() -> VarMap {
        vars(json!({
            "a": {"value": 3, "type": "Integer"},
            "s": {"value": "x", "type": "String"},
            "j": {"value": "{\"k\": 1, \"l\": [1]}", "type": "Json"}
        }))
    }

    proptest::proptest! {
        /// Run longer with `PROPTEST_CASES=100000 cargo test --lib engine::expr::tests::proptest`.
        #[test]
        fn proptest_expressions_never_panic(
            toks in proptest::collection::vec(proptest::sample::select(&TOKENS[..]), 0..60),
            raw in "[-+*/%!?:(){}$#.a-z0-9 '\"<>=&|]{0,80}",
        ) {
            let v = prop_vars();
            let built = format!("${{{}}}", toks.join(" "));
            for text in [built.as_str(), raw.as_str(), &toks.concat()] {
                if let Ok(e) = Expression::parse(text) {
                    let _ = e.value(&[&v]);
                }
                if let Ok(c) = Condition::parse(text) {
                    let _ = c.eval(&v);
                }
            }
        }
    }
}
