// DeployGuard console: plain JavaScript, no build step. Every call goes to /api with the bearer token.
"use strict";

const state = { token: null, me: null, view: "dashboard", deploymentId: null, timer: null, historyCursor: null };
const POLL_MS = 3000;

// ------------------------------------------------------------------ helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const when = (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "-");
const badge = (text, kind) => h("span", { class: `badge ${kind || text}` }, String(text).replace("_", " "));
const say = (text) => { $("status").textContent = text; };

// can_write: true, false, or null (IAM: API Gateway decides each write by the caller's policies; the
// console cannot see them). Unknown keeps the buttons enabled and says what a write needs.
const IAM_WRITES = "writes need the console write policy (ConsoleWritePolicyArn)";
const mayWrite = () => Boolean(state.me) && state.me.can_write !== false;
const writeHint = () => (!state.me || state.me.can_write === false ? "your credential may only read"
  : state.me.can_write === null ? IAM_WRITES : null);

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { message: text }; }
  if (response.status === 401) { signOut("Your token was refused: sign in again."); throw new Error("unauthorised"); }
  if (!response.ok) {
    const detail = body && (body.message || JSON.stringify(body.detail || body));
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function signOut(message) {
  sessionStorage.removeItem("deployguard-token");
  state.token = null;
  $("signin").hidden = false;
  document.querySelectorAll(".view").forEach((v) => { v.hidden = true; });
  say(message || "");
}

// ------------------------------------------------------------------ confirmation dialog

function confirmAction({ title, text, expected, danger, run }) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-typed").hidden = !expected;
  $("confirm-expected").textContent = expected || "";
  $("confirm-name").value = "";
  $("confirm-reason").value = "";
  $("confirm-error").textContent = "";
  $("confirm-ok").className = danger ? "danger" : "";
  const form = $("confirm-form");
  form.onsubmit = async (event) => {
    event.preventDefault();
    const reason = $("confirm-reason").value.trim();
    if (!reason) { $("confirm-error").textContent = "A reason is needed: it goes into the audit trail."; $("confirm-reason").focus(); return; }
    if (expected && $("confirm-name").value.trim() !== expected) {
      $("confirm-error").textContent = `Type ${expected} exactly to confirm.`; $("confirm-name").focus(); return;
    }
    $("confirm-ok").disabled = true;
    try {
      const message = await run(reason);
      dialog.close();
      say(message);
      refresh();
    } catch (error) {
      $("confirm-error").textContent = error.message;
    } finally {
      $("confirm-ok").disabled = false;
    }
  };
  $("confirm-cancel").onclick = () => dialog.close();
  dialog.showModal();
  (expected ? $("confirm-name") : $("confirm-reason")).focus();
}

const VERBS = {
  pause: { label: "Pause", text: "Hold the current traffic weight. Analysis goes on and a failing verdict still rolls back." },
  resume: { label: "Resume", text: "Let the canary advance again when its verdict is healthy." },
  promote: { label: "Promote", text: "Skip the remaining steps: the next assessment that is not failing sends 100% of traffic to the new version." },
  approve: { label: "Approve 100%", text: "Approve full traffic for the canary waiting for a person." },
  retry: { label: "Retry step", text: "Start the held canary's step again." },
  skip_analysis: { label: "Skip analysis", text: "EMERGENCY: verdicts will be recorded but no longer roll back; steps follow their bake time. Everyone is told.", danger: true },
  abort: { label: "Abort", text: "Roll back now: the alias goes back to 100% of the stable version.", danger: true },
};

// in progress, phase failed: the rollback is under way (the record ends when the alias is back)
const rollingBack = (d) => (d.status === "in_progress" || d.status === "pending") && d.phase === "failed";

// leftOnNew: it ended unpromoted while its alias still routes its new version (its rollback failed; the API's
// left_on_new, read from the alias): abort puts the alias back, and nothing else would
function verbsFor(deployment, leftOnNew = false) {
  const active = deployment.status === "in_progress" || deployment.status === "pending";
  if (deployment.driver === "codedeploy") return active ? ["promote", "abort"] : [];
  if (deployment.decision === "held") return ["retry"];
  if (!active) return leftOnNew ? ["abort"] : [];
  if (rollingBack(deployment)) return ["abort"];  // Assess decided to roll back: no other verb would be honoured
  const verbs = [deployment.control.paused ? "resume" : "pause", "promote"];
  if (deployment.control.awaiting_approval) verbs.push("approve");
  if (!deployment.control.skip_analysis) verbs.push("skip_analysis");
  verbs.push("abort");
  return verbs;
}

// CodeDeploy moves a CodeDeploy-driven deployment's traffic: abort is StopDeployment with rollback, promote is
// ContinueDeployment; an ECS service's traffic is its task sets', not an alias
const CODEDEPLOY_VERBS = {
  abort: (ecs) => (ecs
    ? "Roll back now: CodeDeploy stops the deployment with rollback and production traffic goes back to the blue (stable) task set."
    : "Roll back now: CodeDeploy stops the deployment with rollback and the alias goes back to 100% of the stable version."),
  promote: () => "Continue the CodeDeploy deployment (ContinueDeployment): a blue/green deployment waiting to reroute traffic moves production to the new version.",
};

const verbText = (deployment, verb) => (deployment.driver === "codedeploy" && CODEDEPLOY_VERBS[verb]
  ? CODEDEPLOY_VERBS[verb](deployment.target.kind === "ecs") : VERBS[verb].text);

// an ECS task definition ARN as the ECS console names it (family:revision; deployguard.aws.ecs.family_revision)
const familyRevision = (taskDefinition) => taskDefinition.split("/").pop();

function controlButtons(deployment, leftOnNew = false) {
  const name = `${deployment.service} ${deployment.version}`;
  return verbsFor(deployment, leftOnNew).map((verb) => h("button", {
    type: "button",
    class: VERBS[verb].danger ? "danger" : "secondary",
    disabled: !mayWrite(),
    title: writeHint(),
    "aria-label": `${VERBS[verb].label} ${name}`,
    onclick: () => confirmAction({
      title: `${VERBS[verb].label}: ${name}`,
      text: verbText(deployment, verb),
      danger: VERBS[verb].danger,
      run: async (reason) => {
        const out = await api(`/api/deployments/${encodeURIComponent(deployment.deployment_id)}/control/${verb}`,
          { method: "POST", body: JSON.stringify({ reason }) });
        return `${VERBS[verb].label} ${name}: ${out.message}${out.changed ? "" : " (nothing changed)"}`;
      },
    }),
  }, VERBS[verb].label));
}

// ------------------------------------------------------------------ remediation requests people answer
// A remediation in approval mode (an incident's rollback) waits for a person's yes or no; while it waits a canary
// holds its promotion. Pending ones get a "Waiting for your answer" panel (dashboard and deployment page) with
// Approve / Reject (a reason asked, as for the other verbs); answered ones are listed on the deployment page.

const pct = (value) => `${Math.round(value * 100) / 100}%`;

function answerButtons(request) {
  const name = `${request.action} of ${request.service || request.deployment_id} ${request.version || ""}`.trim();
  const answer = (verb, label, text, danger) => h("button", {
    type: "button",
    class: danger ? "danger" : "secondary",
    disabled: !mayWrite(),
    title: writeHint(),
    "aria-label": `${label} ${request.action} request ${request.approval_id}`,
    onclick: () => confirmAction({
      title: `${label}: ${name}`,
      text,
      danger,
      run: async (reason) => {
        const out = await api(`/api/remediation-requests/${encodeURIComponent(request.approval_id)}/${verb}`,
          { method: "POST", body: JSON.stringify({ notes: reason }) });
        return `${label} ${name}: ${out.state} by ${out.decided_by}`;
      },
    }),
  }, label);
  return [
    answer("approve", "Approve", `Run it: ${request.description}`, true),
    answer("reject", "Reject", "Do not run it. A canary held for this answer may then be promoted.", false),
  ];
}

function answerItem(request) {
  const hold = request.hold && !request.hold.ended ? request.hold : null;
  return h("article", { class: "answer", "data-approval": request.approval_id },
    h("h4", {}, badge("waiting", "warning"), " ", `${request.action} of `,
      h("a", { href: `#/deployments/${encodeURIComponent(request.deployment_id)}` },
        `${request.service || request.deployment_id} ${request.version || ""}`.trim())),
    h("dl", { class: "kv" },
      h("dt", {}, "Incident"), h("dd", {}, request.incident_id, request.incident_title ? ` (${request.incident_title})` : ""),
      h("dt", {}, "Action"), h("dd", {}, `${request.action} on ${request.target}: ${request.description}`),
      h("dt", {}, "Asked"), h("dd", {}, when(request.requested_at)),
      h("dt", {}, "Expires"), h("dd", {}, when(request.expires_at)),
      ...(hold ? [h("dt", {}, "Canary"), h("dd", { class: "held" },
        `promotion held at ${pct(hold.weight_percent)} since ${when(hold.since)}`)] : [])),
    h("div", { class: "actions" }, answerButtons(request)));
}

function drawAnswers(sectionId, requests) {
  const waiting = requests.filter((r) => r.answerable);
  $(sectionId).hidden = !waiting.length;
  $(`${sectionId}-list`).replaceChildren(...waiting.map(answerItem));
}

function answeredRequests(requests) {
  const answered = requests.filter((r) => !r.answerable);
  if (!answered.length) return [];
  return [h("h3", {}, "Remediation requests answered"), h("ul", { class: "timeline" }, answered.map((r) => h("li", { "data-approval": r.approval_id },
    badge(r.state, r.state === "rejected" ? "info" : "warning"), " ",
    h("strong", {}, `${r.action} ${r.state}`), r.decided_by ? ` by ${r.decided_by} at ${when(r.decided_at)}` : "",
    ` (incident ${r.incident_id}, asked ${when(r.requested_at)})`, r.notes ? `: ${r.notes}` : "",
    r.result ? h("div", { class: "hint" }, r.result) : null)))];
}

// ------------------------------------------------------------------ views

function canaryCard(card) {
  const d = card.deployment;
  const meter = h("span", {});
  meter.style.width = `${Math.min(100, card.weight_percent)}%`;
  const flags = [];
  if (rollingBack(d)) flags.push(badge("rolling back", "critical"));
  if (d.control.paused) flags.push(badge("paused"));
  if (d.control.skip_analysis) flags.push(badge("analysis skipped", "critical"));
  if (d.control.awaiting_approval) flags.push(badge("waiting for approval", "warning"));
  return h("article", { class: "card", "aria-labelledby": `card-${d.deployment_id}` },
    h("h3", { id: `card-${d.deployment_id}` },
      h("a", { href: `#/deployments/${encodeURIComponent(d.deployment_id)}` }, `${d.service} ${d.version}`)),
    h("div", {}, h("span", { class: "weight" }, `${card.weight_percent}%`), " of traffic on the new version ",
      card.verdict ? badge(card.verdict) : badge("not assessed yet", "info"), " ", flags),
    h("div", { class: "meter", role: "img", "aria-label": `traffic weight ${card.weight_percent} percent` }, meter),
    h("div", { class: "hint" }, `${d.environment} · ${d.driver} · ${d.deployment_id} · assessed ${when(card.assessed_at)}`),
    card.summary ? h("p", {}, card.summary) : null,
    card.reasons.length ? h("ul", { class: "reasons" }, card.reasons.map((r) => h("li", {}, `${r.status}: ${r.message}`))) : null,
    card.open_incidents ? h("p", {}, badge(`${card.open_incidents} open incident(s)`, "open")) : null,
    h("div", { class: "actions" }, controlButtons(d)));
}

async function showDashboard() {
  const [cards, incidents, waiting] = await Promise.all([api("/api/canaries"), api("/api/incidents"),
    api("/api/remediation-requests")]);
  drawAnswers("dashboard-answers", waiting);
  const box = $("canaries");
  box.replaceChildren(...(cards.length ? cards.map(canaryCard) : [h("p", {}, "No canary in flight.")]));
  $("dashboard-incidents").replaceChildren(incidentTable(incidents));
}

function incidentButtons(incident) {
  const can = mayWrite();
  const act = (action, label, danger) => h("button", {
    type: "button", class: danger ? "danger" : "secondary", disabled: !can,
    "aria-label": `${label} incident ${incident.incident_id}`,
    onclick: () => confirmAction({
      title: `${label} ${incident.incident_id}`,
      text: `${incident.title}`,
      run: async (reason) => {
        await api(`/api/incidents/${encodeURIComponent(incident.incident_id)}/${action}`,
          { method: "POST", body: JSON.stringify({ notes: reason }) });
        return `Incident ${incident.incident_id}: ${action} done`;
      },
    }),
  }, label);
  const buttons = [];
  if (incident.status === "open") buttons.push(act("acknowledge", "Acknowledge"), act("escalate", "Escalate"));
  if (incident.status !== "resolved") buttons.push(act("resolve", "Resolve"));
  return buttons;
}

function incidentTable(incidents) {
  if (!incidents.length) return h("p", {}, "No incident.");
  return h("table", {},
    h("caption", { class: "hint" }, `${incidents.length} incident(s)`),
    h("thead", {}, h("tr", {}, ["Incident", "Status", "Severity", "Service", "Opened", "Rules", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, incidents.map((i) => h("tr", { "data-incident": i.incident_id },
      h("td", {}, h("a", { href: `#/deployments/${encodeURIComponent(i.deployment_id)}` }, i.incident_id), h("div", { class: "hint" }, i.title)),
      h("td", {}, badge(i.status)), h("td", {}, badge(i.severity)),
      h("td", {}, `${i.service} ${i.version}`), h("td", {}, when(i.opened_at)),
      h("td", {}, i.rules.join(", ")),
      h("td", {}, h("div", { class: "actions" }, incidentButtons(i)))))));
}

async function showIncidents() {
  const all = $("incidents-all").checked;
  $("incidents").replaceChildren(incidentTable(await api(`/api/incidents?all=${all}`)));
}

function deploymentRows(items) {
  return items.map((d) => h("tr", {},
    h("td", {}, h("a", { href: `#/deployments/${encodeURIComponent(d.deployment_id)}` }, d.deployment_id)),
    h("td", {}, d.service), h("td", {}, d.environment), h("td", {}, d.version),
    h("td", {}, badge(d.status)), h("td", {}, d.decision || "-"), h("td", {}, when(d.started_at)),
    h("td", {}, d.decision_reason || "")));
}

async function showHistory(append) {
  const form = new FormData($("history-filters"));
  const params = new URLSearchParams();
  for (const [key, value] of form.entries()) if (value) params.set(key, value);
  params.set("limit", "25");
  if (append && state.historyCursor) params.set("cursor", state.historyCursor);
  const page = await api(`/api/deployments?${params}`);
  state.historyCursor = page.next_cursor;
  $("history-more").hidden = !page.next_cursor;
  let body = $("history-body");
  if (!append || !body) {
    body = h("tbody", { id: "history-body" });
    $("history").replaceChildren(h("table", {},
      h("caption", { class: "hint" }, "Newest first"),
      h("thead", {}, h("tr", {}, ["Deployment", "Service", "Environment", "Version", "Status", "Decision", "Started", "Why"].map((t) => h("th", { scope: "col" }, t)))),
      body));
  }
  body.append(...deploymentRows(page.items));
  // a status filter searches a bounded number of deployments a request: none found yet may not be none at all
  if (!page.items.length && !append) $("history").replaceChildren(h("p", {}, page.next_cursor
    ? "No match among the deployments searched so far: Load more searches further back."
    : "No deployment matches."));
}

async function showServices() {
  const services = await api("/api/services");
  const can = mayWrite();
  $("services").replaceChildren(h("table", {},
    h("thead", {}, h("tr", {}, ["Service", "Environment", "Latest deployment", "Live version", "Action"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, services.map((s) => {
      const d = s.latest;
      const lambda = d && d.target.kind === "lambda";
      // the version the alias routes to now (GetAlias, read by the API): sent back as from_version, so a repeat
      // changes nothing; when the alias cannot be read the page says so and offers no rollback from a guess
      const unknown = s.live_version_source === "unavailable";
      const ecs = Boolean(d) && d.target.kind === "ecs";
      const live = s.live_version || "-";
      // an ECS service's live version is a task definition: family:revision, its ARN on hover
      const named = ecs && s.live_version ? familyRevision(live) : live;
      const shown = unknown ? `unknown: ${s.live_version_note}` : s.live_version_note ? `${named} (${s.live_version_note})` : named;
      // why the button is greyed out, said on it and (for ECS, which a person may not expect) beside it
      const why = !can ? writeHint()
        : ecs ? "Emergency rollback moves Lambda aliases: for an ECS service, abort its CodeDeploy deployment (stop with rollback: production goes back to the blue task set)"
          : !lambda ? "Emergency rollback moves Lambda aliases: this service has no Lambda deployment"
            : unknown || !s.live_version ? "The live version cannot be read: no rollback from a guess" : "";
      const hintId = `rollback-why-${s.service}`;
      return h("tr", {},
        h("td", {}, s.service), h("td", {}, s.environment),
        h("td", {}, d ? h("a", { href: `#/deployments/${encodeURIComponent(d.deployment_id)}` }, `${d.deployment_id} `) : "-", d ? badge(d.status) : ""),
        h("td", ecs && s.live_version ? { title: live } : {}, shown),
        h("td", {}, h("button", {
          type: "button", class: "danger", disabled: !can || !lambda || unknown || !s.live_version,
          title: why || undefined, "aria-describedby": ecs ? hintId : undefined,
          "aria-label": `Emergency rollback of ${s.service}`,
          onclick: () => confirmAction({
            title: `Emergency rollback: ${s.service}`,
            text: `Put ${s.service} (${s.environment}) back from version ${live} on its last known good version now. Everyone is told.`,
            expected: s.service, danger: true,
            run: async (reason) => {
              const out = await api(`/api/services/${encodeURIComponent(s.service)}/emergency-rollback`, {
                method: "POST",
                body: JSON.stringify({ reason, confirm: s.service, environment: s.environment, from_version: live }),
              });
              return `Emergency rollback of ${s.service}: ${out.message}`;
            },
          }),
        }, "Emergency rollback"),
        // its rollback failed with the alias still on the new version: emergency rollback refuses a split alias,
        // abort of that deployment is what puts it back
        ...(s.left_on_new && d ? controlButtons(d, true) : []),
        ecs ? h("div", { class: "hint", id: hintId }, why) : null));
    }))));
}

// a metric's values as the report shows them: a rate (its reasons say "%", every value a fraction) in
// percent with 3 significant digits, anything else with 4 and the unit its reasons state (ms, s)
const UNIT_SHORT = { milliseconds: "ms", seconds: "s", microseconds: "us", bytes: "B", percent: "%" };

function metricFormat(reasons) {
  const values = reasons.flatMap((r) => [r.canary_value, r.baseline_value]).filter((v) => v !== null && v !== undefined);
  const rate = reasons.some((r) => (r.message || "").includes("%")) && values.every((v) => v >= 0 && v <= 1);
  const found = reasons.map((r) => /vs baseline [-+0-9.e]+ ([A-Za-z]+)/.exec(r.message || "")).find(Boolean);
  const unit = rate || !found ? "" : (UNIT_SHORT[found[1].toLowerCase()] || found[1]);
  const sig = (v, n) => { const a = Math.abs(v); return a >= 1e4 && a < 1e15 ? v.toFixed(0) : String(Number(v.toPrecision(n))); };
  const fmt = (v) => (v === null || v === undefined ? "-" : rate ? `${sig(Number(v) * 100, 3)}%` : `${sig(Number(v), 4)}${unit ? ` ${unit}` : ""}`);
  return { rate, unit, fmt };
}

const isPostDeployment = (a) => ((a.details || {}).kind === "post_deployment");

// a reason's "since period 5" as "since 12:14 (period 5)" on the canary's period clock the API worked out
// from the assessments (deployguard.readmodels.wording.period_clock, as the report says it); as is without one
function onClock(clock, text) {
  if (!clock || !text) return text;
  const start = Date.parse(clock.start);
  return text.replace(/since period (\d+)/g, (_, n) =>
    `since ${new Date(start + Number(n) * clock.seconds * 1000).toISOString().slice(11, 16)} (period ${n})`);
}

function chart(metricId, points, format) {
  // points: the canary's verdicts (canary, baseline) and the post-deployment looks after promotion
  // (after: the version against its own last 24 hours), each its own series
  const W = 380, H = 150, P = 30;
  const values = points.flatMap((p) => [p.baseline, p.canary, p.after]).filter((v) => v !== null && v !== undefined);
  // the axis from 0 (or the lowest value) to the highest; all zero: one unit high (1, or 1% for a rate), no 1e-7%
  const min = Math.min(...values, 0), highest = Math.max(...values, 0);
  const max = highest > min ? highest : min + (format.rate ? 0.01 : 1);
  const x = (i) => P + (points.length < 2 ? 0 : (i * (W - P - 8)) / (points.length - 1));
  const y = (v) => H - P - ((v - min) / (max - min || 1)) * (H - P - 10);
  const line = (key, color, dashed) => {
    const d = points.map((p, i) => (p[key] === null || p[key] === undefined ? null : `${x(i)},${y(p[key])}`)).filter(Boolean);
    const attrs = { points: d.join(" "), fill: "none", stroke: color, "stroke-width": 2.5, "data-series": key };
    return d.length ? svg("polyline", dashed ? { ...attrs, "stroke-dasharray": "5 3" } : attrs) : null;
  };
  const fmt = format.fmt;
  const canary = points.filter((p) => !p.post), after = points.filter((p) => p.post);
  const first = canary[0], last = canary[canary.length - 1];
  const desc = (first ? `${metricId}: baseline from ${fmt(first.baseline)} to ${fmt(last.baseline)}, canary from ${fmt(first.canary)} to ${fmt(last.canary)} over ${canary.length} canary assessments` : `${metricId}: no canary assessment`)
    + (after.length ? `; ${after.length} post-deployment looks after promotion, last ${fmt(after[after.length - 1].after)}` : "");
  return h("figure", { class: "chart" },
    h("h4", {}, format.unit ? `${metricId} (${format.unit})` : format.rate ? `${metricId} (%)` : metricId),
    svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": desc },
      svg("line", { x1: P, y1: H - P, x2: W, y2: H - P, stroke: "#6b6b6b" }),
      svg("line", { x1: P, y1: 0, x2: P, y2: H - P, stroke: "#6b6b6b" }),
      svg("text", { x: 2, y: 12, "font-size": 10, fill: "#1a1a1a" }, fmt(max)),
      svg("text", { x: 2, y: H - P, "font-size": 10, fill: "#1a1a1a" }, fmt(min)),
      line("baseline", "#4a4a4a"), line("canary", "#c2410c"), line("after", "#1d4ed8", true)),
    h("div", { class: "legend" }, h("span", { class: "b" }, "baseline (stable)"), h("span", { class: "c" }, "canary (new)"),
      after.length ? h("span", { class: "a" }, "after promotion (vs its last 24 h)") : null),
    h("details", {}, h("summary", {}, `Data of ${metricId}`),
      h("table", {}, h("thead", {}, h("tr", {}, ["Assessed", "Baseline", "Canary", "After promotion", "Status"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, points.map((p) => h("tr", {}, h("td", {}, when(p.at)), h("td", {}, fmt(p.baseline)), h("td", {}, fmt(p.canary)), h("td", {}, fmt(p.after)), h("td", {}, p.status)))))));
}

// A deployment's page is bounded however old the deployment: the API gives the newest assessments and timeline
// items, in time order, each with a cursor (next_before) to page further back. What "Load older" fetched is kept
// across the polls; each poll fetches the newest page again and joins it to what was loaded further back.
const older = { id: null, assessments: [], assessmentsBefore: null, timeline: [], timelineBefore: null, last: null };

function resetOlder(id) {
  Object.assign(older, { id, assessments: [], assessmentsBefore: null, timeline: [], timelineBefore: null, last: null });
}

async function joinOlder(page, fetchBefore, loaded, isNew) {
  // the newest page, then the pages between it and what was loaded before (new items arrived since): bounded.
  // The caller keeps the joined list as what is loaded, so the next poll fetches only what is newer than it.
  // null: the gap is wider than 20 pages (a tab left open for hours): the caller starts again from the newest.
  if (!loaded.length) return page.items;
  const edge = loaded[loaded.length - 1];
  let items = page.items, before = page.next_before;
  let rounds = 0;
  for (; before && items.length && isNew(items[0], edge) && rounds < 20; rounds++) {
    const more = await fetchBefore(before);
    items = more.items.concat(items);
    before = more.next_before;
  }
  if (before && items.length && isNew(items[0], edge)) return null;
  return loaded.concat(items.filter((i) => isNew(i, edge)));
}

const newerAssessment = (a, edge) => Date.parse(a.at) > Date.parse(edge.at) || (a.at === edge.at && a.assessment_id > edge.assessment_id);
const newerInstant = (t, edge) => Date.parse(t.at) > Date.parse(edge.at);  // the API never splits an instant

async function olderAssessments(base, before) {
  const page = await api(`${base}?before=${encodeURIComponent(before)}`);  // the detail, an older page of assessments
  return { items: page.assessments, next_before: page.assessments_before };
}

async function showDeployment(id) {
  if (older.id !== id) resetOlder(id);
  const base = `/api/deployments/${encodeURIComponent(id)}`;
  const [history, timelinePage, requests] = await Promise.all([api(base), api(`${base}/timeline`),
    api(`${base}/remediation-requests`)]);
  if (older.id !== id) return;  // another deployment was opened meanwhile
  older.last = { history, timelinePage, requests };
  await drawDeployment(id);
}

async function drawDeployment(id) {
  // the newest pages last fetched, joined to what Load older fetched (no new request unless items arrived between)
  const { history, timelinePage } = older.last;
  const base = `/api/deployments/${encodeURIComponent(id)}`;
  let assessments = await joinOlder({ items: history.assessments, next_before: history.assessments_before },
    (before) => olderAssessments(base, before), older.assessments, newerAssessment);
  let timeline = await joinOlder(timelinePage,
    (before) => api(`${base}/timeline?before=${encodeURIComponent(before)}`), older.timeline, newerInstant);
  if (older.id !== id) return;  // another deployment was opened meanwhile
  // what is shown is what is loaded: the next poll fetches only what arrived after it; a gap too wide to fill
  // drops what Load older fetched (shown again from the newest page, Load older to go back)
  if (assessments === null) { assessments = history.assessments; older.assessments = []; older.assessmentsBefore = null; }
  else if (older.assessments.length) older.assessments = assessments;
  if (timeline === null) { timeline = timelinePage.items; older.timeline = []; older.timelineBefore = null; }
  else if (older.timeline.length) older.timeline = timeline;
  const assessmentsBefore = older.assessments.length ? older.assessmentsBefore : history.assessments_before;
  const timelineBefore = older.timeline.length ? older.timelineBefore : timelinePage.next_before;
  const d = history.deployment;
  const clock = (text) => onClock(history.period_clock, text);
  $("deployment-title").textContent = `${d.service} ${d.version} (${d.deployment_id})`;
  // the canary's last verdict (new version against stable) and, after promotion, the latest
  // post-deployment look (the version against its own last 24 hours): two things, labelled apart
  const canaryVerdicts = assessments.filter((a) => !isPostDeployment(a));
  const looks = assessments.filter(isPostDeployment);
  const latest = canaryVerdicts[canaryVerdicts.length - 1] || history.latest_verdict;
  const look = looks[looks.length - 1] || history.latest_look;
  $("deployment-summary").replaceChildren(h("dl", { class: "kv" },
    h("dt", {}, "Status"), h("dd", {}, badge(d.status), " ", d.decision || ""),
    h("dt", {}, "Traffic on new version"), h("dd", { id: "deployment-weight" }, `${Math.round(d.canary_weight * 10000) / 100}%`),
    h("dt", {}, "Canary's last verdict"), h("dd", { id: "deployment-verdict" }, latest ? [badge(latest.verdict.decision), " ", clock(latest.verdict.summary)] : "not assessed"),
    ...(look ? [h("dt", {}, "Latest post-deployment look"), h("dd", { id: "deployment-look" }, badge(look.verdict.decision), " ", clock(look.verdict.summary), ` (${when(look.at)})`)] : []),
    // each said once: why it ended (the remediation's cause, not the verdict again), then the gate's outcome
    h("dt", {}, "Why it ended"), h("dd", { id: "deployment-why" }, clock(history.why_ended || "-")),
    h("dt", {}, "Target"), h("dd", {}, d.target.kind === "lambda"
      ? `${d.target.function_name}:${d.target.alias} ${d.target.stable_version} → ${d.target.new_version}`
      : `${d.target.cluster}/${d.target.service}`),
    h("dt", {}, "Driver"), h("dd", {}, d.driver),
    h("dt", {}, "Started"), h("dd", {}, when(d.started_at)),
    h("dt", {}, "Outcome"), h("dd", { id: "deployment-outcome" },
      `${history.outcome_note || history.outcome.state.replace(/_/g, " ")} (exit ${history.outcome.exit_code})`)));
  const report = h("button", { type: "button", class: "secondary", onclick: () => openReport(d.deployment_id) }, "Open the report");
  $("deployment-actions").replaceChildren(...controlButtons(d, history.left_on_new), report);
  drawAnswers("deployment-answers", older.last.requests);
  $("deployment-requests").replaceChildren(...answeredRequests(older.last.requests));
  const series = {}, reasons = {};
  for (const a of assessments) {
    const post = isPostDeployment(a);
    for (const r of a.verdict.reasons) {
      (reasons[r.metric_id] = reasons[r.metric_id] || []).push(r);
      (series[r.metric_id] = series[r.metric_id] || []).push(post
        ? { at: a.at, post, after: r.canary_value, status: r.status }
        : { at: a.at, post, baseline: r.baseline_value, canary: r.canary_value, status: r.status });
    }
  }
  const charts = Object.entries(series).map(([metric, points]) => chart(metric, points, metricFormat(reasons[metric])));
  $("deployment-charts").replaceChildren(...(charts.length ? charts : [h("p", {}, "No assessment recorded.")]));
  $("deployment-assessments-shown").textContent = assessments.length
    ? `The ${assessments.length} ${assessmentsBefore ? "newest " : ""}assessment(s), from ${when(assessments[0].at)}${assessmentsBefore ? "; older ones are stored" : ""}.`
    : "";
  $("deployment-older-assessments").hidden = !assessmentsBefore;
  $("deployment-older-assessments").onclick = () => loadOlder(id, "assessments", assessments, assessmentsBefore);
  $("deployment-incidents").replaceChildren(incidentTable(history.incidents));
  // the newest first, older ones below the last (Load older)
  $("deployment-timeline").replaceChildren(...timeline.slice().reverse().map((t) => h("li", {},
    h("time", { datetime: t.at }, when(t.at)), " ", badge(t.kind, t.severity), " ", h("strong", {}, clock(t.title)), t.detail ? ` ${clock(t.detail)}` : "")));
  $("deployment-older-timeline").hidden = !timelineBefore;
  $("deployment-older-timeline").onclick = () => loadOlder(id, "timeline", timeline, timelineBefore);
  const view = $("view-deployment");
  view.dataset.drawn = String(Number(view.dataset.drawn || 0) + 1);  // how many times drawn (polls, Load older)
}

async function loadOlder(id, what, shown, before) {
  // one page before the oldest shown; kept (with what is shown now) across the polls until another deployment opens
  if (!before) return;
  try {
    const base = `/api/deployments/${encodeURIComponent(id)}`;
    const page = what === "assessments" ? await olderAssessments(base, before)
      : await api(`${base}/timeline?before=${encodeURIComponent(before)}`);
    if (older.id !== id) return;
    older[what] = page.items.concat(shown);
    older[`${what}Before`] = page.next_before;
    await drawDeployment(id);
  } catch (error) {
    if (error.message !== "unauthorised") say(`Could not load older ${what}: ${error.message}`);
  }
}

async function openReport(id) {
  const response = await fetch(`/api/deployments/${encodeURIComponent(id)}/report?format=html`,
    { headers: { Authorization: `Bearer ${state.token}` } });
  if (!response.ok) { say(`Could not load the report: ${response.status}`); return; }
  const url = URL.createObjectURL(new Blob([await response.text()], { type: "text/html" }));
  window.open(url, "_blank", "noopener");
  say("The report opened in a new tab.");
}

// ------------------------------------------------------------------ routing and polling

const VIEWS = { dashboard: showDashboard, incidents: showIncidents, history: () => showHistory(false), services: showServices };

function route() {
  const hash = location.hash || "#/";
  const match = hash.match(/^#\/deployments\/(.+)$/);
  state.view = match ? "deployment" : ({ "#/incidents": "incidents", "#/history": "history", "#/services": "services" }[hash] || "dashboard");
  state.deploymentId = match ? decodeURIComponent(match[1]) : null;
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${state.view}`; });
  document.querySelectorAll("nav a").forEach((a) => {
    if (a.dataset.view === state.view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  refresh(true);
}

async function refresh(moveFocus) {
  clearTimeout(state.timer);
  if (!state.token) return;
  try {
    if (state.view === "deployment") await showDeployment(state.deploymentId);
    else await VIEWS[state.view]();
    if (moveFocus) { const title = document.querySelector(`#view-${state.view} h2`); if (title) { title.tabIndex = -1; title.focus(); } }
    if ($("status").textContent.startsWith("Could not load")) say("");  // loaded again: the failure is over
  } catch (error) {
    if (error.message !== "unauthorised") say(`Could not load: ${error.message}`);
  }
  const live = state.view === "dashboard" || state.view === "deployment" || state.view === "incidents";
  if (live && !$("confirm").open) state.timer = setTimeout(() => refresh(false), POLL_MS);
}

async function signIn(token) {
  state.token = token;
  try {
    state.me = await api("/api/whoami");
  } catch (error) {
    if (error.message !== "unauthorised") say(`Could not sign in: ${error.message}`);
    return;
  }
  sessionStorage.setItem("deployguard-token", token);
  $("signin").hidden = true;
  $("who").textContent = `${state.me.identity} · ${state.me.can_write === null ? IAM_WRITES : state.me.can_write ? "may act" : "read only"}`;
  route();
}

document.addEventListener("DOMContentLoaded", () => {
  const fromLink = location.hash.match(/^#token=(.+)$/);
  if (fromLink) history.replaceState(null, "", location.pathname + "#/");
  $("signin-form").addEventListener("submit", (event) => { event.preventDefault(); signIn($("token").value.trim()); });
  $("incidents-all").addEventListener("change", () => refresh(false));
  $("history-filters").addEventListener("submit", (event) => { event.preventDefault(); showHistory(false).catch((e) => say(e.message)); });
  $("history-more").addEventListener("click", () => showHistory(true).catch((e) => say(e.message)));
  $("confirm").addEventListener("close", () => refresh(false));
  window.addEventListener("hashchange", route);
  const token = fromLink ? decodeURIComponent(fromLink[1]) : sessionStorage.getItem("deployguard-token");
  if (token) signIn(token); else signOut("");
});
