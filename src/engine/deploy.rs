//! Deployments: parsing resources, duplicate filtering, versioning process definitions.
//!
//! A deployment is a named set of resources. `.bpmn` resources are parsed and each executable
//! process becomes a new version of its key; `.dmn`, `.form` and anything else is stored only.
//! With `enable-duplicate-filtering` an unchanged deployment (same name and source) is not
//! redeployed; with `deploy-changed-only` only the changed resources are.
//!
//! ```text
//! DeployRequest ─prepare()─► Prepared ─Store::deploy()─► Deployment + Definitions
//!   parse models, linear, on a        under the store lock: duplicate filtering,
//!   blocking thread, no lock held      versions (in the order deployments reach the lock)
//! ```
//! Model resources above [`MODEL_LIMIT`] are refused unparsed. `DELETE /deployment/{id}`
//! ([`Store::delete_deployment`]) removes a deployment, its definitions and, with `cascade`,
//! their instances and history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::bpmn;
use super::bpmn::Process;
use super::errors::{ApiError, ApiResult};
use super::state::{Definition, Deployment, HistoryState, Store, new_id};
use super::variables::format_date;

/// A checked `POST /deployment/create` request.
#[derive(Debug, Default)]
pub(crate) struct DeployRequest {
    pub name: Option<String>,
    pub source: Option<String>,
    pub tenant_id: Option<String>,
    pub duplicate_filtering: bool,
    pub changed_only: bool,
    /// Resource name (the part's filename) → contents.
    pub resources: BTreeMap<String, Vec<u8>>,
}

/// The largest model resource the engine parses (10 MiB): real models stay far below it.
pub(crate) const MODEL_LIMIT: usize = 10 * 1024 * 1024;

fn is_bpmn(name: &str) -> bool {
    name.ends_with(".bpmn") || name.ends_with(".bpmn20.xml")
}

/// A deployment whose models are parsed and checked, ready for [`Store::deploy`].
#[derive(Debug)]
pub(crate) struct Prepared {
    req: DeployRequest,
    /// Each executable process with the name of the resource it came from.
    parsed: Vec<(String, Process)>,
}

impl DeployRequest {
    /// Parses every model resource (`.bpmn`, `.bpmn20.xml`); other resources are stored only.
    ///
    /// This is the deployment's CPU work, linear in the size of its models: callers run it on a
    /// blocking thread before they lock the store, so the engine keeps answering meanwhile. A
    /// model above [`MODEL_LIMIT`] is refused unparsed. Every problem of every resource is
    /// reported at once, as Camunda's `ParseException` with per-resource `details`.
    ///
    /// Once `abandoned` is set (the client went away) a parse in progress stops early.
    pub(crate) fn prepare(self, abandoned: &AtomicBool) -> ApiResult<Prepared> {
        #[cfg(test)]
        gate::hold(&self.resources);
        let mut parsed = Vec::new();
        let mut details = Map::new();
        let mut summary = Vec::new();
        for (resource, bytes) in self.resources.iter().filter(|(n, _)| is_bpmn(n)) {
            let result = if bytes.len() > MODEL_LIMIT {
                Err(vec![too_large(bytes.len())])
            } else {
                bpmn::parse_until(bytes, abandoned)
            };
            match result {
                Ok(processes) => {
                    parsed.extend(processes.into_iter().map(|p| (resource.clone(), p)))
                }
                Err(problems) => {
                    let errors: Vec<Value> = problems
                        .iter()
                        .map(|p| {
                            summary.push(format!(
                                "* {} | resource {resource} | line {} | column {}",
                                p.message, p.line, p.column
                            ));
                            json!({
                                "message": p.message,
                                "line": p.line,
                                "column": p.column,
                                "mainBpmnElementId": p.element_id,
                                "bpmnElementIds": p.element_id.iter().collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    details.insert(
                        resource.clone(),
                        json!({ "errors": errors, "warnings": [] }),
                    );
                }
            }
        }
        if !details.is_empty() {
            return Err(ApiError::parse(
                format!(
                    "ENGINE-09005 Could not parse BPMN process. Errors: \n{}",
                    summary.join("\n")
                ),
                Value::Object(details),
            ));
        }
        let mut keys: Vec<&str> = parsed.iter().map(|(_, p)| p.id.as_str()).collect();
        keys.sort_unstable();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(ApiError::invalid(format!(
                "The deployment contains definitions with the same key '{}' (id attribute), this is not allowed",
                w[0]
            )));
        }
        Ok(Prepared { req: self, parsed })
    }
}

/// The problem reported for a model resource above [`MODEL_LIMIT`].
fn too_large(len: usize) -> bpmn::Problem {
    bpmn::Problem {
        message: format!(
            "The resource is {len} bytes: too large to be a model; the engine parses models \
             of up to {MODEL_LIMIT} bytes"
        ),
        line: 1,
        column: 1,
        element_id: None,
    }
}

impl Store {
    /// Registers a prepared deployment, answering the JSON Camunda returns.
    ///
    /// Only bookkeeping happens here, under the store lock: duplicate filtering against the
    /// deployments registered so far and the next version per key. Two deployments racing
    /// are thus filtered and numbered in the order they reach the lock, as if sequential.
    pub(crate) fn deploy(&mut self, prepared: Prepared) -> ApiResult<Value> {
        let Prepared { req, mut parsed } = prepared;
        let mut resources = req.resources;
        if (req.duplicate_filtering || req.changed_only)
            && let Some(name) = &req.name
        {
            let same: Vec<&Deployment> = self
                .deployments
                .iter()
                .filter(|d| {
                    d.name.as_ref() == Some(name)
                        && d.source == req.source
                        && d.tenant_id == req.tenant_id
                })
                .collect();
            let latest_of =
                |resource: &str| same.iter().rev().find_map(|d| d.resources.get(resource));
            if req.changed_only {
                resources.retain(|n, bytes| latest_of(n) != Some(bytes));
                if resources.is_empty()
                    && let Some(last) = same.last()
                {
                    return Ok(self.deployment_json(last, None));
                }
                parsed.retain(|(n, _)| resources.contains_key(n));
            } else if let Some(last) = same.last()
                && resources
                    .iter()
                    .all(|(n, bytes)| latest_of(n) == Some(bytes))
            {
                // Camunda compares each resource with the latest of its name: when none
                // changed, nothing is deployed (a subset of unchanged files included).
                return Ok(self.deployment_json(last, None));
            }
        }

        let deployment = Deployment {
            id: new_id(),
            name: req.name,
            source: req.source,
            tenant_id: req.tenant_id,
            time: Utc::now(),
            resources,
        };
        let mut new_defs = Vec::new();
        for (resource, model) in parsed {
            let version = self
                .definitions
                .iter()
                .filter(|d| d.key == model.id && d.tenant_id == deployment.tenant_id)
                .map(|d| d.version)
                .max()
                .unwrap_or(0)
                + 1;
            let def = Arc::new(Definition {
                id: format!("{}:{version}:{}", model.id, new_id()),
                key: model.id.clone(),
                version,
                deployment_id: deployment.id.clone(),
                resource,
                tenant_id: deployment.tenant_id.clone(),
                model,
            });
            new_defs.push(Arc::clone(&def));
            self.definitions.push(def);
        }
        self.stats.deployments += 1;
        let body = self.deployment_json(&deployment, Some(&new_defs));
        self.deployments.push(deployment);
        Ok(body)
    }

    /// `DELETE /deployment/{id}`: removes the deployment and its process definitions.
    ///
    /// As Camunda's `DeploymentManager`: with `cascade` the definitions' running instances are
    /// deleted (reason "deleted deployment"), then their historic instances; without it, a
    /// definition with running instances refuses the delete (ENGINE-03076, 500) and the
    /// historic instances stay. The previous version of each key becomes the latest again.
    pub(crate) fn delete_deployment(&mut self, id: &str, cascade: bool) -> ApiResult<()> {
        let Some(index) = self.deployments.iter().position(|d| d.id == id) else {
            return Err(ApiError::not_found(format!(
                "Deployment with id '{id}' do not exist"
            )));
        };
        let defs: Vec<String> = self
            .definitions
            .iter()
            .filter(|d| d.deployment_id == id)
            .map(|d| d.id.clone())
            .collect();
        let of_deployment = |def: &Definition| defs.contains(&def.id);
        let running: Vec<String> = self
            .instances
            .values()
            .filter(|i| of_deployment(&i.definition))
            .map(|i| i.id.clone())
            .collect();
        if !cascade {
            for def in &defs {
                let n = self
                    .instances
                    .values()
                    .filter(|i| i.definition.id == *def)
                    .count();
                if n > 0 {
                    return Err(ApiError::engine(format!(
                        "ENGINE-03076 Deletion of process definition without cascading failed. \
                         Process definition with id: {def} can't be deleted, because there are \
                         {n} dependent process instances."
                    )));
                }
            }
        }
        for instance in running {
            self.end_instance(
                &instance,
                HistoryState::ExternallyTerminated,
                Some("deleted deployment".to_owned()),
            );
        }
        if cascade {
            self.history.retain(|_, h| !of_deployment(&h.definition));
        }
        self.definitions.retain(|d| d.deployment_id != id);
        self.deployments.remove(index);
        Ok(())
    }

    /// A deployment as `/deployment` lists it; with `defs`, as `/deployment/create` answers.
    pub(crate) fn deployment_json(
        &self,
        d: &Deployment,
        defs: Option<&[Arc<Definition>]>,
    ) -> Value {
        let mut body = json!({
            "id": d.id,
            "name": d.name,
            "source": d.source,
            "deploymentTime": format_date(d.time),
            "tenantId": d.tenant_id,
            "links": [],
        });
        if let Some(map) = body.as_object_mut() {
            let deployed = match defs {
                None => Value::Null,
                Some(defs) => Value::Object(
                    defs.iter()
                        .map(|d| (d.id.clone(), definition_json(d)))
                        .collect(),
                ),
            };
            map.insert("deployedProcessDefinitions".to_owned(), deployed);
            for k in [
                "deployedCaseDefinitions",
                "deployedDecisionDefinitions",
                "deployedDecisionRequirementsDefinitions",
            ] {
                map.insert(k.to_owned(), Value::Null);
            }
        }
        body
    }
}

/// A process definition as the engine reports it.
pub(crate) fn definition_json(d: &Definition) -> Value {
    json!({
        "id": d.id,
        "key": d.key,
        "category": "http://bpmn.io/schema/bpmn",
        "description": null,
        "name": d.model.name,
        "version": d.version,
        "resource": d.resource,
        "deploymentId": d.deployment_id,
        "diagram": null,
        "suspended": false,
        "tenantId": d.tenant_id,
        "versionTag": d.model.version_tag,
        "historyTimeToLive": d.model.history_ttl.as_deref().and_then(ttl_days),
        "startableInTasklist": true,
    })
}

/// `historyTimeToLive` in days: `30` or the ISO form `P30D` (Camunda accepts nothing else).
pub(crate) fn ttl_days(text: &str) -> Option<u64> {
    let t = text.trim();
    let days = t
        .strip_prefix('P')
        .and_then(|d| d.strip_suffix('D'))
        .unwrap_or(t);
    days.parse().ok()
}

/// Test hook: [`DeployRequest::prepare`] of a deployment with a resource named [`gate::NAME`]
/// waits until the test opens the gate, so a test can watch the engine during a parse.
#[cfg(test)]
pub(crate) mod gate {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::mpsc::{Receiver, Sender};

    /// The resource name that holds the parse.
    pub(crate) const NAME: &str = "gate.bpmn";

    /// (tell the test the parse started, wait for its release).
    pub(crate) static GATE: Mutex<Option<(Sender<()>, Receiver<()>)>> = Mutex::new(None);

    pub(super) fn hold(resources: &BTreeMap<String, Vec<u8>>) {
        if !resources.contains_key(NAME) {
            return;
        }
        let taken = GATE.lock().ok().and_then(|mut g| g.take());
        if let Some((started, release)) = taken {
            let _ = started.send(());
            let _ = release.recv();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ttl_days;

    #[test]
    fn history_ttl_reads_days_and_iso_durations() {
        assert_eq!(ttl_days("30"), Some(30));
        assert_eq!(ttl_days("P1D"), Some(1));
        assert_eq!(ttl_days("P1Y"), None);
    }
}
