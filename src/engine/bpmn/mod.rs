//! BPMN 2.0 parser: turns a `.bpmn` resource into executable [`Process`] models.
//!
//! Supported: none start event; none / error / terminate end events; service tasks with
//! `camunda:type="external"` (topic, priority, `camunda:properties`); plain `task`, `manualTask`
//! and none intermediate throw events (pass-through); exclusive gateways (conditions, `default`);
//! parallel gateways (fork / join); error boundary events on external tasks (with
//! `camunda:errorCodeVariable` / `camunda:errorMessageVariable`). External tasks may carry
//! `camunda:inputOutput` (text, `${…}`, `camunda:list`, `camunda:map` values; see [`io`]) and
//! `${…}` in `camunda:topic` / `camunda:taskPriority`; `camunda:taskPriority` on `<process>` is
//! the default priority of its external tasks. Anything else is a
//! deployment error naming the element, so a model is never half-executed. Only executable
//! processes are deployed, and each must set `camunda:historyTimeToLive` (ENGINE-12018, as
//! Camunda 7.20+ enforces by default). Every problem carries its line and column.

use std::collections::{BTreeMap, HashMap};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::expr::Condition;

mod build;
pub(crate) mod io;
use build::build;

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
pub(crate) fn parse(xml: &[u8]) -> Result<Vec<Process>, Vec<Problem>> {
    let text = String::from_utf8_lossy(xml);
    let mut reader = Reader::from_str(&text);
    let mut st = ParseState::default();
    let mut depth = 0usize;
    let mut process_depth = 0usize;
    loop {
        let before = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(err) => {
                let (line, column) = line_col(&text, reader.error_position());
                st.problems.push(Problem {
                    message: format!("XML is not well-formed: {err}"),
                    line,
                    column,
                    element_id: None,
                });
                return Err(st.problems);
            }
        };
        let pos = line_col(&text, skip_ws(&text, before));
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
                    let (line, column) = line_col(&text, text.len() as u64);
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

fn skip_ws(text: &str, offset: u64) -> u64 {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    let skipped = text[start..].len() - text[start..].trim_start().len();
    offset + skipped as u64
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: u64) -> (usize, usize) {
    let offset = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
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
            r#"<bpmn:userTask id="done" />"#,
        );
        let problems = parse(xml.as_bytes()).expect_err("must fail");
        assert!(
            problems.iter().any(|p| p.message.contains("userTask")),
            "{problems:?}"
        );
        let xml = order_process("order").replace(r#" camunda:topic="ship""#, "");
        let problems = parse(xml.as_bytes()).expect_err("must fail");
        assert_eq!(problems[0].element_id.as_deref(), Some("ship"));
    }
}
