//! Condition expressions on sequence flows: a small subset of JUEL.
//!
//! Supported: `${flag}`, `${!flag}`, `${var == 'value'}`, `!=`, `<`, `>`, `<=`, `>=`, the word
//! forms (`eq ne lt gt le ge and or not empty`), `&&`, `||`, parentheses, string / number /
//! boolean / null literals, and property access on `Json` variables (`${order.total > 3}`).
//! Expressions are parsed at deployment (a syntax error fails the deployment) and evaluated when
//! a token leaves a gateway; an unknown variable fails the call like Camunda's
//! `PropertyNotFoundException`.

use serde_json::Value;

use super::variables::{TypedValue, VarMap, VarType};

/// Why an expression could not be parsed or evaluated.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ExprError {
    #[error("Error parsing '{expr}': {reason}")]
    Syntax { expr: String, reason: String },
    #[error(
        "Unknown property used in expression: {expr}. Cause: Cannot resolve identifier '{name}'"
    )]
    Unknown { expr: String, name: String },
    #[error("Cannot coerce '{value}' in expression {expr}: {reason}")]
    Coerce {
        expr: String,
        value: String,
        reason: &'static str,
    },
}

/// A parsed condition, with its source text kept for messages.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    source: String,
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Lit(Val),
    Path(Vec<String>),
    Not(Box<Node>),
    Neg(Box<Node>),
    Empty(Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
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
}

/// A runtime value inside an expression.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Bool(bool),
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
            Val::Num(n) => write!(f, "{n}"),
            Val::Str(s) => f.write_str(s),
            Val::Json(v) => write!(f, "{v}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Sym(&'static str),
}

impl Condition {
    /// Parses `${…}` (or `#{…}`) text.
    pub(crate) fn parse(text: &str) -> Result<Condition, ExprError> {
        let source = text.trim().to_owned();
        let syntax = |reason: &str| ExprError::Syntax {
            expr: source.clone(),
            reason: reason.to_owned(),
        };
        let inner = source
            .strip_prefix("${")
            .or_else(|| source.strip_prefix("#{"))
            .and_then(|s| s.strip_suffix('}'))
            .ok_or_else(|| syntax("expected an expression of the form ${...}"))?;
        let toks = lex(inner).map_err(|r| syntax(&r))?;
        let mut p = Parser { toks, pos: 0 };
        let root = p.or().map_err(|r| syntax(&r))?;
        if p.pos != p.toks.len() {
            return Err(syntax("unexpected trailing input"));
        }
        Ok(Condition { source, root })
    }

    /// Evaluates the condition against the visible variables; it must yield a boolean.
    pub(crate) fn eval(&self, vars: &VarMap) -> Result<bool, ExprError> {
        let v = self.eval_node(&self.root, vars)?;
        self.truth(&v)
    }

    fn eval_node(&self, node: &Node, vars: &VarMap) -> Result<Val, ExprError> {
        Ok(match node {
            Node::Lit(v) => v.clone(),
            Node::Path(path) => self.lookup(path, vars)?,
            Node::Not(n) => Val::Bool(!self.truth(&self.eval_node(n, vars)?)?),
            Node::Neg(n) => Val::Num(-self.number(&self.eval_node(n, vars)?)?),
            Node::Empty(n) => Val::Bool(match self.eval_node(n, vars)? {
                Val::Null => true,
                Val::Str(s) => s.is_empty(),
                Val::Json(Value::Array(a)) => a.is_empty(),
                Val::Json(Value::Object(o)) => o.is_empty(),
                _ => false,
            }),
            Node::Bin(Op::Or, a, b) => Val::Bool(
                self.truth(&self.eval_node(a, vars)?)? || self.truth(&self.eval_node(b, vars)?)?,
            ),
            Node::Bin(Op::And, a, b) => Val::Bool(
                self.truth(&self.eval_node(a, vars)?)? && self.truth(&self.eval_node(b, vars)?)?,
            ),
            Node::Bin(op, a, b) => {
                let (a, b) = (self.eval_node(a, vars)?, self.eval_node(b, vars)?);
                Val::Bool(self.compare(*op, &a, &b)?)
            }
        })
    }

    fn lookup(&self, path: &[String], vars: &VarMap) -> Result<Val, ExprError> {
        let unknown = |name: &str| ExprError::Unknown {
            expr: self.source.clone(),
            name: name.to_owned(),
        };
        let (first, rest) = path.split_first().ok_or_else(|| unknown(""))?;
        let var = vars.get(first).ok_or_else(|| unknown(first))?;
        let mut val = from_typed(var);
        for prop in rest {
            val = match val {
                Val::Json(Value::Object(mut map)) => map
                    .remove(prop)
                    .map(from_json)
                    .ok_or_else(|| unknown(prop))?,
                _ => return Err(unknown(prop)),
            };
        }
        Ok(val)
    }

    fn coerce(&self, v: &Val, reason: &'static str) -> ExprError {
        ExprError::Coerce {
            expr: self.source.clone(),
            value: v.to_string(),
            reason,
        }
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
            Val::Null => Ok(0.0),
            Val::Str(s) => s.trim().parse().map_err(|_| self.coerce(v, "not a number")),
            other => Err(self.coerce(other, "not a number")),
        }
    }

    fn compare(&self, op: Op, a: &Val, b: &Val) -> Result<bool, ExprError> {
        use std::cmp::Ordering;
        if matches!(op, Op::Eq | Op::Ne) {
            let equal = match (a, b) {
                (Val::Null, Val::Null) => true,
                (Val::Null, _) | (_, Val::Null) => false,
                (Val::Num(_), _) | (_, Val::Num(_)) => self.number(a)? == self.number(b)?,
                (Val::Bool(_), _) | (_, Val::Bool(_)) => self.truth(a)? == self.truth(b)?,
                _ => a == b,
            };
            return Ok(equal == (op == Op::Eq));
        }
        let ord = match (a, b) {
            (Val::Str(x), Val::Str(y)) => x.cmp(y),
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
    match v.ty {
        VarType::Json => match v.value.as_str().map(serde_json::from_str::<Value>) {
            Some(Ok(parsed)) => from_json(parsed),
            _ => from_json(v.value.clone()),
        },
        _ => from_json(v.value.clone()),
    }
}

fn from_json(v: Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(b),
        Value::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Val::Str(s),
        other => Val::Json(other),
    }
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    const SYMS: [&str; 14] = [
        "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", ".", "-", "+",
    ];
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
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
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            toks.push(Tok::Num(
                text.parse().map_err(|_| format!("bad number '{text}'"))?,
            ));
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
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
    Ok(toks)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat(&mut self, sym: &str, word: &str) -> bool {
        let hit = match self.peek() {
            Some(Tok::Sym(s)) => *s == sym,
            Some(Tok::Ident(w)) => !word.is_empty() && w == word,
            _ => false,
        };
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn or(&mut self) -> Result<Node, String> {
        let mut left = self.and()?;
        while self.eat("||", "or") {
            left = Node::Bin(Op::Or, Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, String> {
        let mut left = self.equality()?;
        while self.eat("&&", "and") {
            left = Node::Bin(Op::And, Box::new(left), Box::new(self.equality()?));
        }
        Ok(left)
    }

    fn equality(&mut self) -> Result<Node, String> {
        let mut left = self.relation()?;
        loop {
            let op = if self.eat("==", "eq") {
                Op::Eq
            } else if self.eat("!=", "ne") {
                Op::Ne
            } else {
                return Ok(left);
            };
            left = Node::Bin(op, Box::new(left), Box::new(self.relation()?));
        }
    }

    fn relation(&mut self) -> Result<Node, String> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat("<=", "le") {
                Op::Le
            } else if self.eat(">=", "ge") {
                Op::Ge
            } else if self.eat("<", "lt") {
                Op::Lt
            } else if self.eat(">", "gt") {
                Op::Gt
            } else {
                return Ok(left);
            };
            left = Node::Bin(op, Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Node, String> {
        if self.eat("!", "not") {
            return Ok(Node::Not(Box::new(self.unary()?)));
        }
        if self.eat("-", "") {
            return Ok(Node::Neg(Box::new(self.unary()?)));
        }
        if self.eat("", "empty") {
            return Ok(Node::Empty(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, String> {
        let tok = self.peek().cloned().ok_or("unexpected end of expression")?;
        self.pos += 1;
        match tok {
            Tok::Num(n) => Ok(Node::Lit(Val::Num(n))),
            Tok::Str(s) => Ok(Node::Lit(Val::Str(s))),
            Tok::Sym("(") => {
                let inner = self.or()?;
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
                    let mut path = vec![w];
                    while self.eat(".", "") {
                        match self.peek().cloned() {
                            Some(Tok::Ident(p)) => {
                                self.pos += 1;
                                path.push(p);
                            }
                            _ => return Err("expected a property name after '.'".to_owned()),
                        }
                    }
                    Ok(Node::Path(path))
                }
            },
            Tok::Sym(s) => Err(format!("unexpected '{s}'")),
        }
    }
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

    #[test]
    fn a_value_that_cannot_be_coerced_is_quoted_as_written() {
        let v = vars(json!({"status": {"value": "maybe", "type": "String"}}));
        let err = eval("${status}", &v).unwrap_err().to_string();
        assert_eq!(
            err,
            "Cannot coerce 'maybe' in expression ${status}: not a boolean"
        );
    }
}
