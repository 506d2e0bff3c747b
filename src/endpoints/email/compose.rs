//! Builds one task's message: renders the templates, checks addresses, loads attachments.
//!
//! ```text
//! text only ─► text/plain          html only ─► text/html
//! both      ─► multipart/alternative (text, html)
//! attachments ─► multipart/mixed (the body above, then one part per File variable)
//! ```

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, MultiPart, SinglePart};
use serde_json::Value;

use super::address::mailboxes;
use super::{EmailEndpoint, single_from, template_error};
use crate::endpoints::class;
use crate::endpoints::template::{JsonTemplate, TemplateContext};
use crate::endpoints::{EndpointError, EndpointRequest};

/// The header that carries the external task id, next to the derived `Message-ID`.
const TASK_ID_HEADER: &str = "X-Procos-Task-Id";

/// A rendered value as text: `null` is absent, strings as they are, anything else as JSON.
fn text(value: Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// `<task-id@domain>`: characters outside `[A-Za-z0-9._-]` become `_`. Without a task id (never
/// the case for a fetched task) a random id keeps the header valid.
pub(super) fn message_id(task_id: &str, domain: &str) -> String {
    let local: String = task_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let local = local.trim_matches('.');
    if local.is_empty() {
        format!("<{}@{domain}>", uuid::Uuid::new_v4())
    } else {
        format!("<{local}@{domain}>")
    }
}

/// The message for one task and its `Message-ID`.
pub(super) async fn message(
    endpoint: &EmailEndpoint,
    request: &EndpointRequest,
    ctx: &TemplateContext,
) -> Result<(Message, String), EndpointError> {
    let t = &endpoint.templates;
    let render = |template: &JsonTemplate| template.render(ctx).map_err(template_error);
    let recipients = |field: &'static str, template: &JsonTemplate| {
        mailboxes(field, &render(template)?).map_err(|e| endpoint.invalid_address(&e))
    };

    let from_value = render(&t.from)?;
    let from_text = text(from_value.clone()).unwrap_or_default();
    let from = mailboxes("from", &from_value)
        .and_then(|list| single_from(&from_text, list))
        .map_err(|e| EndpointError::permanent(e.to_string()).code(class::INVALID_FROM))?;
    let to = recipients("to", &t.to)?;
    let cc = recipients("cc", &t.cc)?;
    let bcc = recipients("bcc", &t.bcc)?;
    let reply_to = recipients("reply_to", &t.reply_to)?;
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(EndpointError::business(
            &endpoint.invalid_address_error_code,
            "the message has no recipient: `to`, `cc` and `bcc` are all empty",
        )
        .code(class::INVALID_ADDRESS));
    }
    // A subject is one header line: line breaks would end it.
    let subject = text(render(&t.subject)?)
        .unwrap_or_default()
        .replace(['\r', '\n'], " ");
    let body = |template: &JsonTemplate| {
        Ok::<_, EndpointError>(text(render(template)?).filter(|s| !s.trim().is_empty()))
    };
    let body = match (body(&t.text)?, body(&t.html)?) {
        (Some(text), Some(html)) => Body::Multi(MultiPart::alternative_plain_html(text, html)),
        (Some(text), None) => Body::Single(SinglePart::plain(text)),
        (None, Some(html)) => Body::Single(SinglePart::html(html)),
        (None, None) => {
            return Err(EndpointError::permanent(
                "the message has no body: neither `text` nor `html` rendered any text",
            )
            .code(class::NO_BODY));
        }
    };
    let names = attachment_names(render(&t.attachments)?)?;
    let mut attachments = Vec::with_capacity(names.len());
    for name in &names {
        attachments.push(attachment(request, name).await?);
    }

    let id = message_id(&request.task_id, &endpoint.message_id_domain);
    let mut builder = Message::builder()
        .from(from)
        .subject(subject)
        .message_id(Some(id.clone()));
    if !request.task_id.is_empty() {
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(TASK_ID_HEADER),
            request.task_id.clone(),
        ));
    }
    for m in to {
        builder = builder.to(m);
    }
    for m in cc {
        builder = builder.cc(m);
    }
    for m in bcc {
        builder = builder.bcc(m);
    }
    for m in reply_to {
        builder = builder.reply_to(m);
    }
    let built = if attachments.is_empty() {
        match body {
            Body::Single(part) => builder.singlepart(part),
            Body::Multi(part) => builder.multipart(part),
        }
    } else {
        let mixed = MultiPart::mixed();
        let mut mixed = match body {
            Body::Single(part) => mixed.singlepart(part),
            Body::Multi(part) => mixed.multipart(part),
        };
        for part in attachments {
            mixed = mixed.singlepart(part);
        }
        builder.multipart(mixed)
    };
    let message = built.map_err(|e| {
        EndpointError::permanent(format!("the message cannot be built: {e}")).code(class::MESSAGE)
    })?;
    Ok((message, id))
}

/// The body before attachments are added.
enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

/// The rendered `attachments`: absent, a name, a comma-separated string or a list of names.
fn attachment_names(value: Value) -> Result<Vec<String>, EndpointError> {
    let invalid = |v: &Value| {
        EndpointError::permanent(format!(
            "`attachments` must render to File variable names (a string or a list), got `{v}`"
        ))
        .code(class::ATTACHMENT)
    };
    let split = |s: &str| {
        s.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    match &value {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(split(s)),
        Value::Array(items) => {
            let mut names = Vec::new();
            for item in items {
                names.extend(split(item.as_str().ok_or_else(|| invalid(item))?));
            }
            Ok(names)
        }
        other => Err(invalid(other)),
    }
}

/// One File variable as an attachment part, named and typed as the engine reported it.
async fn attachment(request: &EndpointRequest, name: &str) -> Result<SinglePart, EndpointError> {
    let unavailable = |why: &str| {
        EndpointError::permanent(format!("attachment `{name}`: {why}")).code(class::ATTACHMENT)
    };
    if !request.variables.contains_key(name) {
        return Err(unavailable("the task has no such variable"));
    }
    let Some(files) = &request.files else {
        return Err(unavailable("File variables cannot be loaded here"));
    };
    let content = files.load(name).await?;
    let meta = files.metadata(name).await.unwrap_or_default();
    let filename = meta
        .filename
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| name.to_string());
    let content_type = meta
        .mime_type
        .and_then(|m| ContentType::parse(&m).ok())
        .or_else(|| ContentType::parse(guess_mime(&filename)).ok())
        .unwrap_or_else(octet_stream);
    Ok(Attachment::new(filename).body(content.to_vec(), content_type))
}

/// `application/octet-stream`, which always parses.
fn octet_stream() -> ContentType {
    ContentType::parse("application/octet-stream").unwrap_or(ContentType::TEXT_PLAIN)
}

/// A MIME type from a file name's extension, for engines that did not report one.
fn guess_mime(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "zip" => "application/zip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}
