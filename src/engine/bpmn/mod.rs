//! BPMN 2.0 parser: turns a `.bpmn` resource into executable [`Process`] models.
//!
//! Supported: none start event; none / error / terminate end events; service tasks with
//! `camunda:type="external"` (topic, priority, `camunda:properties`); plain `task`, `manualTask`
//! and none intermediate throw events (pass-through); exclusive gateways (conditions, `default`);
//! parallel gateways (fork / join); error boundary events on external tasks (with
//! `camunda:errorCodeVariable` / `camunda:errorMessageVariable`). External tasks may carry
//! `camunda:inputOutput` (text, `${…}`, `camunda:list`, `camunda:map` values; see [`io`]) and
//! `${…}` in `camunda:topic` / `camunda:taskPriority`; `camunda:taskPriority` on `<process>` is
//! the default priority of its external tasks. Timer start events
//! (`timeCycle` ISO repeating intervals or Quartz cron, `timeDate`, `timeDuration`), intermediate
//! timer catch events (`timeDuration`, `timeDate`) and timer boundary events on external / user
//! tasks (also `timeCycle`; interrupting or not); user tasks with their camunda attributes as data (see
//! `waits.rs`). Listeners, loops and expressions on these are refused. Anything else is a
//! deployment error naming the element, so a model is never half-executed. Only executable
//! processes are deployed, and each must set `camunda:historyTimeToLive` (ENGINE-12018, as
//! Camunda 7.20+ enforces by default). Every problem carries its line and column.
//!
//! Hostile input: parsing is linear in the resource's size (positions are found incrementally)
//! and never recurses with the nesting depth. As Camunda's parser (DTDs disabled, a schema for
//! the root) it refuses bytes that are not UTF-8 (naming the byte offset), a DOCTYPE,
//! undeclared entities, malformed or repeated attributes, content outside the root element, an
//! empty document and a root other than `definitions`, with the Xerces message where it has one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::expr::Condition;

mod build;
pub(crate) mod io;
mod waits;
use build::build;
pub(crate) use waits::UserTaskDef;

use super::timers::TimerSpec;

/// One executable process of a deployed resource.
#[derive(Debug, Clone)]
pub(crate) struct Process {
    pub id: String,
    pub name: Option<String>,
    pub version_tag: Option<String>,
    pub history_ttl: Option<String>,
    pub elements: HashMap<String, Element>,
    pub flows: HashMap<String, Flow>,
    /// Outgoing flow ids per element, in document order.
    pub outgoing: HashMap<String, Vec<String>>,
    /// Number of incoming flows per element (parallel joins wait for all of them).
    pub incoming: HashMap<String, usize>,
    /// Error boundary events per activity id.
    pub boundaries: HashMap<String, Vec<String>>,
    pub start_event: String,
    /// Input/output mappings, error variables and `${…}` topics / priorities, per element id
    /// (only elements that have any).
    pub mappings: HashMap<String, io::ElementMappings>,
    /// Timer start events: each is scheduled while this is the latest version of its key.
    pub timer_starts: Vec<String>,
}

/// A flow node.
#[derive(Debug, Clone)]
pub(crate) struct Element {
    pub id: String,
    pub kind: Kind,
    /// The `default` flow of a gateway or activity.
    pub default_flow: Option<String>,
}

/// What a flow node does when a token arrives.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    StartEvent,
    EndEvent,
    /// Error end event with its error code (no enclosing scope can catch it here).
    ErrorEndEvent,
    TerminateEndEvent,
    ExternalTask {
        topic: String,
        priority: i64,
        properties: BTreeMap<String, String>,
    },
    PassThrough,
    ExclusiveGateway,
    ParallelGateway,
    /// Error boundary event; `error_code: None` catches every error.
    ErrorBoundary {
        attached_to: String,
        error_code: Option<String>,
    },
    /// A start event with a timer: instances start here when its job fires (and by REST).
    TimerStart {
        timer: TimerSpec,
    },
    /// An intermediate timer catch event: the token waits until the timer fires.
    TimerCatch {
        timer: TimerSpec,
    },
    /// A timer boundary event; when it fires an interrupting one cancels the activity.
    TimerBoundary {
        attached_to: String,
        timer: TimerSpec,
        interrupting: bool,
    },
    /// A user task: the token waits until a person completes it (`POST /task/{id}/complete`).
    UserTask(Box<UserTaskDef>),
}

/// A sequence flow.
#[derive(Debug, Clone)]
pub(crate) struct Flow {
    pub source: String,
    pub target: String,
    pub condition: Option<Condition>,
}

/// One problem found in a resource, positioned like Camunda's parse errors.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub message: String,
    pub line: usize,
    pub column: usize,
    pub element_id: Option<String>,
}

/// An element being read (finished at its end tag).
#[derive(Debug, Default)]
struct Pending {
    tag: String,
    id: String,
    attrs: HashMap<String, String>,
    pos: (usize, usize),
    event_defs: Vec<(String, Option<String>)>,
    properties: BTreeMap<String, String>,
    condition: Option<String>,
    /// `camunda:inputOutput` and error-variable attributes inside the element.
    io: io::IoCollector,
    /// Local names of every element nested inside (listeners, loop characteristics, …).
    tags: Vec<String>,
    /// `timeDuration` / `timeDate` / `timeCycle` of a timer event definition, with its text.
    timer: Option<(String, String)>,
}

#[derive(Debug, Default)]
struct ProcBuilder {
    attrs: HashMap<String, String>,
    pos: (usize, usize),
    nodes: Vec<Pending>,
    flows: Vec<Pending>,
}

#[derive(Default)]
struct ParseState {
    problems: Vec<Problem>,
    errors: HashMap<String, Option<String>>,
    procs: Vec<ProcBuilder>,
    current: Option<ProcBuilder>,
    pending: Option<Pending>,
    /// Depth of the open flow node / flow inside the process (0 = none open).
    pending_depth: usize,
    in_condition: bool,
}

const FLOW_NODES: [&str; 20] = [
    "startEvent",
    "endEvent",
    "serviceTask",
    "task",
    "manualTask",
    "intermediateThrowEvent",
    "exclusiveGateway",
    "parallelGateway",
    "boundaryEvent",
    "userTask",
    "scriptTask",
    "sendTask",
    "receiveTask",
    "businessRuleTask",
    "subProcess",
    "callActivity",
    "inclusiveGateway",
    "eventBasedGateway",
    "intermediateCatchEvent",
    "complexGateway",
];

/// Parses a BPMN resource; on any problem returns all problems found.
///
/// Refused like Camunda's parser (DTDs disabled, schema-checked root): bytes that are not
/// UTF-8, a DOCTYPE, an undeclared entity, content outside the root element, no root element
/// or a root that is not `definitions`. Positions are found incrementally ([`Positions`]), so
/// the work is linear in the size of the resource, and no recursion follows the nesting depth.
#[cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "deployments use parse_until; tests and tools parse directly"
    )
)]
pub(crate) fn parse(xml: &[u8]) -> Result<Vec<Process>, Vec<Problem>> {
    parse_until(xml, &AtomicBool::new(false))
}

/// [`parse`] that gives up once `abandoned` is set (checked every [`CHECK_EVERY`] XML events):
/// the client that sent the deployment went away, nobody waits for the answer.
pub(crate) fn parse_until(
    xml: &[u8],
    abandoned: &AtomicBool,
) -> Result<Vec<Process>, Vec<Problem>> {
    let text = match std::str::from_utf8(xml) {
        Ok(text) => text,
        Err(err) => return Err(vec![not_utf8(xml, &err)]),
    };
    // A UTF-8 byte order mark is allowed before the prolog; it is not content.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut at = Positions::new(text);
    let mut reader = Reader::from_str(text);
    let mut st = ParseState::default();
    let mut depth = 0usize;
    let mut process_depth = 0usize;
    let mut root = Root::Before;
    for events in 1u64.. {
        let before = reader.buffer_position();
        if events % CHECK_EVERY == 0 && abandoned.load(Ordering::Relaxed) {
            return Err(vec![xml_problem(
                "Parsing abandoned: the client that sent the deployment went away".to_owned(),
                at.line_col(before),
            )]);
        }
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(err) => {
                let (line, column) = at.line_col(reader.error_position());
                return Err(vec![xml_problem(
                    format!("XML is not well-formed: {err}"),
                    (line, column),
                )]);
            }
        };
        let pos = at.line_col(skip_ws(text, before));
        if let Some(message) = refusal(&event, depth, &mut root) {
            return Err(vec![xml_problem(message, pos)]);
        }
        match event {
            Event::Start(e) => {
                depth += 1;
                st.start(&e, pos, depth, &mut process_depth);
            }
            Event::Empty(e) => {
                st.start(&e, pos, depth + 1, &mut process_depth);
                st.end(depth + 1, &mut process_depth);
            }
            Event::End(_) => {
                st.end(depth, &mut process_depth);
                depth = depth.saturating_sub(1);
            }
            Event::Text(t) if st.in_condition || st.io_text() => st.push_text(&t.xml10_content()),
            Event::CData(t) if st.in_condition || st.io_text() => st.push_text(&t.xml10_content()),
            Event::GeneralRef(r) if st.in_condition || st.io_text() => {
                let raw = format!("&{};", r.xml10_content());
                let resolved = quick_xml::escape::unescape(&raw).map(|c| c.into_owned());
                st.push_text(&resolved.unwrap_or(raw));
            }
            Event::Eof => {
                if depth > 0 {
                    let (line, column) = at.line_col(text.len() as u64);
                    st.problems.push(Problem {
                        message: "XML is not well-formed: unexpected end of file".to_owned(),
                        line,
                        column,
                        element_id: None,
                    });
                }
                break;
            }
            _ => {}
        }
    }
    if !st.problems.is_empty() {
        return Err(st.problems);
    }
    let errors = std::mem::take(&mut st.errors);
    let mut out = Vec::new();
    for builder in std::mem::take(&mut st.procs) {
        if let Some(p) = build(builder, &errors, &mut st.problems) {
            out.push(p);
        }
    }
    if st.problems.is_empty() {
        Ok(out)
    } else {
        Err(st.problems)
    }
}

impl ParseState {
    fn start(
        &mut self,
        e: &BytesStart<'_>,
        pos: (usize, usize),
        depth: usize,
        process_depth: &mut usize,
    ) {
        let tag = local(e.local_name().as_ref());
        let attrs = attributes(e);
        if *process_depth == 0 {
            match tag.as_str() {
                "process" => {
                    *process_depth = depth;
                    self.current = Some(ProcBuilder {
                        attrs,
                        pos,
                        ..Default::default()
                    });
                }
                "error" => {
                    if let Some(id) = attrs.get("id") {
                        self.errors
                            .insert(id.clone(), attrs.get("errorCode").cloned());
                    }
                }
                _ => {}
            }
            return;
        }
        if self.pending.is_none() {
            if depth == *process_depth + 1
                && (FLOW_NODES.contains(&tag.as_str()) || tag == "sequenceFlow")
            {
                self.pending_depth = depth;
                self.pending = Some(Pending {
                    id: attrs.get("id").cloned().unwrap_or_default(),
                    tag,
                    attrs,
                    pos,
                    ..Default::default()
                });
            }
            return;
        }
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        p.io.start(&tag, &attrs, depth.saturating_sub(self.pending_depth));
        p.tags.push(tag.clone());
        if waits::is_timer_part(&tag) {
            // Its text is read like a condition's (see push_text).
            p.timer = Some((tag.clone(), String::new()));
            self.in_condition = true;
        }
        if tag.ends_with("EventDefinition") && depth == self.pending_depth + 1 {
            p.event_defs.push((tag, attrs.get("errorRef").cloned()));
        } else if tag == "property" && p.tag != "sequenceFlow" {
            if let (Some(name), Some(value)) = (attrs.get("name"), attrs.get("value")) {
                p.properties.insert(name.clone(), value.clone());
            }
        } else if tag == "conditionExpression" {
            self.in_condition = true;
            p.condition = Some(String::new());
        }
    }

    /// Whether text now belongs to an input/output parameter of the open element.
    fn io_text(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| p.io.wants_text())
    }

    fn push_text(&mut self, text: &str) {
        if let Some(p) = self.pending.as_mut()
            && p.io.wants_text()
        {
            p.io.text(text);
            return;
        }
        if let Some(cond) = self.pending.as_mut().and_then(|p| p.condition.as_mut()) {
            cond.push_str(text);
        } else if let Some((_, timer)) = self.pending.as_mut().and_then(|p| p.timer.as_mut()) {
            timer.push_str(text);
        }
    }

    fn end(&mut self, depth: usize, process_depth: &mut usize) {
        self.in_condition = false;
        if let Some(p) = self.pending.as_mut()
            && depth > self.pending_depth
        {
            p.io.end(depth - self.pending_depth);
        }
        if *process_depth == 0 {
            return;
        }
        if depth == *process_depth {
            *process_depth = 0;
            if let Some(b) = self.current.take() {
                self.procs.push(b);
            }
            return;
        }
        if self.pending.is_some()
            && depth == self.pending_depth
            && let (Some(p), Some(b)) = (self.pending.take(), self.current.as_mut())
        {
            if p.tag == "sequenceFlow" {
                b.flows.push(p);
            } else {
                b.nodes.push(p);
            }
        }
    }
}

/// Local name of a (possibly prefixed) XML name.
fn local(name: &str) -> String {
    name.to_owned()
}

/// Attributes by local name (`camunda:topic` → `topic`); unescaped.
fn attributes(e: &BytesStart<'_>) -> HashMap<String, String> {
    e.attributes()
        .flatten()
        .filter(|a| {
            a.key.as_ref() != "xmlns" && a.key.prefix().is_none_or(|p| p.as_ref() != "xmlns")
        })
        .map(|a| {
            let key = local(a.key.local_name().as_ref());
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_else(|_| a.value.clone().into_owned());
            (key, value)
        })
        .collect()
}

/// How many XML events [`parse_until`] reads between two looks at its `abandoned` flag.
const CHECK_EVERY: u64 = 4096;

/// Where the reader is relative to the document's one root element.
#[derive(Clone, Copy, PartialEq)]
enum Root {
    Before,
    Open,
    After,
}

/// Why `event` makes the document something Camunda's parser refuses, if it does. The
/// messages are those of the Xerces parser Camunda uses, so they can be looked up.
fn refusal(event: &Event<'_>, depth: usize, root: &mut Root) -> Option<String> {
    let outside = depth == 0;
    let content = match event {
        Event::DocType(_) => {
            return Some(
                "DOCTYPE is disallowed when the feature \
                 \"http://apache.org/xml/features/disallow-doctype-decl\" set to true."
                    .to_owned(),
            );
        }
        Event::GeneralRef(r) => {
            let name: &str = r;
            if !is_predefined(name) {
                return Some(format!(
                    "The entity \"{name}\" was referenced, but not declared."
                ));
            }
            true
        }
        Event::Text(t) => !t.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')),
        Event::CData(_) => true,
        Event::Start(e) | Event::Empty(e) if !outside => return bad_attribute(e),
        Event::Start(e) | Event::Empty(e) => {
            if let Some(message) = bad_attribute(e) {
                return Some(message);
            }
            if *root != Root::Before {
                return Some(
                    "The markup in the document following the root element must be \
                     well-formed."
                        .to_owned(),
                );
            }
            let name = e.local_name();
            if name.as_ref() != "definitions" {
                return Some(format!(
                    "cvc-elt.1.a: Cannot find the declaration of element '{}'.",
                    e.name().as_ref()
                ));
            }
            *root = if matches!(event, Event::Empty(_)) {
                Root::After
            } else {
                Root::Open
            };
            false
        }
        Event::End(_) if depth == 1 => {
            *root = Root::After;
            false
        }
        Event::Eof if *root == Root::Before => return Some("Premature end of file.".to_owned()),
        _ => false,
    };
    match (content && outside, *root) {
        (true, Root::Before) => Some("Content is not allowed in prolog.".to_owned()),
        (true, _) => Some("Content is not allowed in trailing section.".to_owned()),
        (false, _) => None,
    }
}

/// An attribute Camunda's parser refuses: malformed, repeated, or referring to an entity
/// that is not declared (no DTD can declare one).
fn bad_attribute(e: &BytesStart<'_>) -> Option<String> {
    let element = e.name().as_ref().to_owned();
    for attr in e.attributes() {
        let attr = match attr {
            Ok(a) => a,
            Err(err) => return Some(format!("Element type \"{element}\": {err}")),
        };
        let mut rest: &str = &attr.value;
        while let Some(amp) = rest.find('&') {
            rest = &rest[amp + 1..];
            let name = rest.split(';').next().unwrap_or_default();
            if !is_predefined(name) {
                return Some(format!(
                    "The entity \"{name}\" was referenced, but not declared (attribute \"{}\" \
                     of element type \"{element}\").",
                    attr.key.as_ref()
                ));
            }
        }
    }
    None
}

/// The five entities XML predefines, and character references.
fn is_predefined(name: &str) -> bool {
    ["lt", "gt", "amp", "apos", "quot"].contains(&name) || name.starts_with('#')
}

/// A document-level problem (no element to name).
fn xml_problem(message: String, (line, column): (usize, usize)) -> Problem {
    Problem {
        message,
        line,
        column,
        element_id: None,
    }
}

/// The problem for bytes that are not UTF-8: which byte, where.
fn not_utf8(xml: &[u8], err: &std::str::Utf8Error) -> Problem {
    let offset = err.valid_up_to();
    let valid = std::str::from_utf8(&xml[..offset]).unwrap_or_default();
    let (line, column) = Positions::new(valid).line_col(offset as u64);
    let byte = xml.get(offset).copied().unwrap_or_default();
    xml_problem(
        format!(
            "Invalid UTF-8: byte 0x{byte:02X} at byte offset {offset} (line {line}, column \
             {column}) is not part of a UTF-8 sequence; the resource must be encoded in UTF-8"
        ),
        (line, column),
    )
}

/// The offset of the first non-whitespace byte at or after `offset`.
fn skip_ws(text: &str, offset: u64) -> u64 {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    let skipped = text.as_bytes()[start..]
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    offset + skipped as u64
}

/// Line and column of byte offsets, found incrementally: each call scans only the bytes since
/// the previous one, so positioning every event of a document is linear in its size.
struct Positions<'a> {
    text: &'a [u8],
    /// Offset reached so far, the line it is on (1-based) and where that line starts.
    offset: usize,
    line: usize,
    line_start: usize,
}

impl<'a> Positions<'a> {
    fn new(text: &'a str) -> Self {
        Positions {
            text: text.as_bytes(),
            offset: 0,
            line: 1,
            line_start: 0,
        }
    }

    /// 1-based line and column (in bytes) of `offset`. An offset before the last one asked
    /// (only an error position can be) rescans from the start, once.
    fn line_col(&mut self, offset: u64) -> (usize, usize) {
        let offset = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.text.len());
        if offset < self.offset {
            *self = Positions {
                text: self.text,
                offset: 0,
                line: 1,
                line_start: 0,
            };
        }
        for (i, b) in self.text[self.offset..offset].iter().enumerate() {
            if *b == b'\n' {
                self.line += 1;
                self.line_start = self.offset + i + 1;
            }
        }
        self.offset = offset;
        (self.line, offset - self.line_start + 1)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A two-task process used across the engine's tests.
    pub(crate) fn order_process(key: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="t">
  <bpmn:error id="Err_1" name="bad" errorCode="BAD_ORDER" />
  <bpmn:process id="{key}" name="Order" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="check" />
    <bpmn:serviceTask id="check" camunda:type="external" camunda:topic="check" camunda:taskPriority="7">
      <bpmn:extensionElements><camunda:properties><camunda:property name="model" value="gpt" /></camunda:properties></bpmn:extensionElements>
    </bpmn:serviceTask>
    <bpmn:boundaryEvent id="onBad" attachedToRef="check"><bpmn:errorEventDefinition errorRef="Err_1" /></bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="fBad" sourceRef="onBad" targetRef="rejected" />
    <bpmn:endEvent id="rejected" />
    <bpmn:sequenceFlow id="f2" sourceRef="check" targetRef="gw" />
    <bpmn:exclusiveGateway id="gw" default="fLow" />
    <bpmn:sequenceFlow id="fHigh" sourceRef="gw" targetRef="ship"><bpmn:conditionExpression xsi:type="bpmn:tFormalExpression" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">${{amount &gt; 100}}</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="fLow" sourceRef="gw" targetRef="done" />
    <bpmn:serviceTask id="ship" camunda:type="external" camunda:topic="ship" />
    <bpmn:sequenceFlow id="f3" sourceRef="ship" targetRef="done" />
    <bpmn:endEvent id="done" />
  </bpmn:process>
</bpmn:definitions>"#
        )
    }

    #[test]
    fn parses_tasks_gateways_boundaries_and_conditions() {
        let procs = parse(order_process("order").as_bytes()).expect("valid model");
        let p = &procs[0];
        assert_eq!(p.id, "order");
        assert_eq!(p.start_event, "start");
        match &p.elements["check"].kind {
            Kind::ExternalTask {
                topic,
                priority,
                properties,
            } => {
                assert_eq!(topic, "check");
                assert_eq!(*priority, 7);
                assert_eq!(properties.get("model").map(String::as_str), Some("gpt"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(&p.elements["onBad"].kind,
            Kind::ErrorBoundary { error_code: Some(c), .. } if c == "BAD_ORDER"));
        assert_eq!(p.elements["gw"].default_flow.as_deref(), Some("fLow"));
        assert!(p.flows["fHigh"].condition.is_some());
        assert_eq!(p.outgoing["gw"], vec!["fHigh", "fLow"]);
    }

    #[test]
    fn missing_history_ttl_is_refused_with_engine_12018() {
        let xml = order_process("order").replace(r#" camunda:historyTimeToLive="P1D""#, "");
        let problems = parse(xml.as_bytes()).expect_err("must fail");
        assert!(problems[0].message.starts_with("ENGINE-12018"));
        assert_eq!(problems[0].line, 4);
    }

    #[test]
    fn broken_xml_reports_line_and_column() {
        let xml =
            "<definitions>\n  <process id=\"p\" isExecutable=\"true\">\n  </proc>\n</definitions>";
        let problems = parse(xml.as_bytes()).expect_err("must fail");
        assert_eq!(problems[0].line, 3);
        assert!(problems[0].column >= 3, "{problems:?}");
    }

    #[test]
    fn unsupported_elements_and_missing_topics_are_refused() {
        let xml = order_process("order").replace(
            r#"<bpmn:endEvent id="done" />"#,
            r#"<bpmn:scriptTask id="done" />"#,
        );
        let problems = parse(xml.as_bytes()).expect_err("must fail");
        assert!(
            problems.iter().any(|p| p.message.contains("scriptTask")),
            "{problems:?}"
        );
        let xml = order_process("order").replace(r#" camunda:topic="ship""#, "");
        let problems = parse(xml.as_bytes()).expect_err("must fail");
        assert_eq!(problems[0].element_id.as_deref(), Some("ship"));
    }
}
