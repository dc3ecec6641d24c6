// facegate console: plain JavaScript, no build step, no CDN. Every action is one call of the documented API
// (/docs), made with the key the user signed in with; the server decides what that key may do.
"use strict";

const KEY = "facegate.key";          // sessionStorage only: gone when the tab closes
const SIGNED_IN = "facegate.signed"; // set even for an empty key (a service running without keys)
const PAGE = { employees: 20, audit: 25, groups: 20, members: 20 };
const state = {
  scope: null,
  employees: { offset: 0, q: "" },
  groups: { offset: 0, q: "" },
  members: { offset: 0, q: "" }, // of the group whose page is open
  audit: { offset: 0, filters: {} },
  employee: null, // the one whose page is open
  group: null, // the one whose page is open
};

const $ = (selector, root = document) => root.querySelector(selector);
// A form's control by name: form.elements, never form[name] (where "name" or "action" would be the form's own).
const field = (form, name) => form.elements.namedItem(name);

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// --- the API -------------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    Object.assign(this, { status, code, retryAfter });
  }
}

async function api(method, path, { params = {}, form = null, json = undefined } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers["X-API-Key"] = key;
  if (json !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, { method, headers, body: json !== undefined ? JSON.stringify(json) : form });
  } catch {
    throw new ApiError(0, "network", "the service could not be reached");
  }
  if (response.status === 204) return null;
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: a proxy's page */ }
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw new ApiError(response.status, error.code || "http_error", error.message || response.statusText,
                       response.headers.get("Retry-After"));
  }
  return body;
}

// The API's error codes, worded for the people at the desk; the API's own message follows where it adds facts.
const WORDS = {
  network: "The service could not be reached. Check the network, then try again.",
  unauthorized: "That key was not accepted (unknown, revoked or mistyped). Sign in again.",
  forbidden: "Your key may not do this: it needs an admin key.",
  no_face: "No face was found in the photo. Face the camera, in good light, and try again.",
  multiple_faces: "More than one face is in the photo. Only the employee may be in it.",
  face_too_small: "The face is too small in the photo. Come closer, or crop the photo around the face.",
  invalid_image: "That file is not a photo the service can read (JPEG, PNG, WebP, BMP or TIFF).",
  image_too_large: "The photo is too large. Send a smaller one.",
  poor_quality: "The photo is not good enough to be a reference.",
  not_one_person: "The photos are not all of the same person. Take them again, of the employee alone.",
  too_many_photos: "Too many photos in one request.",
  employee_exists: "This employee is already enrolled. Tick “Replace the reference photo” to replace it.",
  employee_not_found: "No employee has that id.",
  group_not_found: "No group has that id (someone may have deleted it).",
  group_exists: "A group with that id (or one differing only in case) exists already.",
  too_many_groups: "Too many groups: the service's limit on groups, or on one employee's groups, is reached.",
  too_many_members: "Too many employees in one call. Add them in smaller lists.",
  stale_template: "This employee was enrolled with an older model: enroll them again.",
  threshold_too_loose: "That threshold is looser than the calibrated one.",
  too_many_attempts: "Too many failed attempts for this employee or key.",
  too_many_references: "This employee already has the most references allowed. Remove one first.",
  last_reference: "This is the employee's only reference. Delete the employee instead, or add another first.",
  reference_not_found: "That reference no longer exists (someone else may have removed it).",
  reference_conflict: "Someone else changed this employee's references at the same moment. Try again.",
  validation_error: "Something in the form is not valid.",
  not_ready: "The service is not ready (starting, or its database is away). Try again in a moment.",
  model_changing: "The service is switching to a new model. Try again in a moment.",
  not_found: "Not found.",
  internal_error: "The service failed. The request id in its logs tells what happened.",
};

function explain(error) {
  if (!(error instanceof ApiError)) return `Something went wrong in the console: ${error.message}`;
  const words = WORDS[error.code] || `The service refused (${error.status}).`;
  const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : "";
  const facts = ["network", "unauthorized", "forbidden", "not_found"].includes(error.code) ? "" : ` (${error.message})`;
  return words + facts + wait;
}

function showError(error) {
  const box = $("#error");
  box.textContent = typeof error === "string" ? error : explain(error);
  box.dataset.code = error.code || "";
  box.hidden = false;
  box.focus();
  if (error.code === "unauthorized") signOut(); // revoked meanwhile, or mistyped: back to the sign-in form
}

function clearError() {
  $("#error").hidden = true;
  $("#error").textContent = "";
}

function say(text) {
  $("#status").textContent = text;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

// --- views: #employees, #employee/<id>, #groups, #group/<id>, #enroll, #try, #audit --------------------------

const VIEWS = ["signin", "employees", "employee", "groups", "group", "enroll", "try", "audit"];
const ADMIN_VIEWS = ["employees", "employee", "groups", "group", "enroll", "audit"];
const PARENT = { employee: "employees", group: "groups" }; // a page's section in the navigation

function show(name) {
  for (const view of VIEWS) $(`#view-${view}`).hidden = view !== name;
  for (const button of document.querySelectorAll("nav button")) {
    if (button.dataset.view === name || button.dataset.view === PARENT[name]) {
      button.setAttribute("aria-current", "page");
    } else {
      button.removeAttribute("aria-current");
    }
  }
}

// Where a key starts: an admin's at the employees, a door's at verify & identify (the only view it has).
const home = () => (state.scope === "admin" ? "employees" : "try");

async function route() {
  clearError();
  if (!sessionStorage.getItem(SIGNED_IN)) return show("signin");
  const [name, ...rest] = location.hash.slice(1).split("/");
  let view = VIEWS.includes(name) && name !== "signin" ? name : home();
  if (ADMIN_VIEWS.includes(view) && state.scope !== "admin") view = "try";
  show(view);
  try {
    if (view === "employees") await loadEmployees();
    if (view === "employee") await loadEmployee(decodeURIComponent(rest.join("/")));
    if (view === "groups") await loadGroups();
    if (view === "group") await loadGroup(decodeURIComponent(rest.join("/")));
    if (view === "try") tryFields();
    if (view === "audit") await loadAudit();
  } catch (error) {
    showError(error);
  }
}

function go(hash) {
  if (location.hash === `#${hash}`) route();
  else location.hash = hash;
}

// --- sign in -------------------------------------------------------------------------------------------------

async function signIn(key) {
  sessionStorage.setItem(KEY, key);
  sessionStorage.setItem(SIGNED_IN, "1");
  try {
    const me = await api("GET", "/me");
    state.scope = me.scope;
    $("#who-text").textContent = me.auth ? `${me.scope} key ${me.key_id}` : "no keys: full access";
  } catch (error) {
    signOut(false);
    throw error;
  }
  for (const node of document.querySelectorAll(".admin-only")) node.hidden = state.scope !== "admin";
  $("#nav").hidden = false;
  $("#who").hidden = false;
}

function signOut(navigate = true) {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(SIGNED_IN);
  state.scope = null;
  $("#nav").hidden = true;
  $("#who").hidden = true;
  $("#key").value = "";
  if (navigate) {
    show("signin");
    history.replaceState(null, "", location.pathname);
  }
}

// --- photos: a file or the webcam, previewed with the face the service found -----------------------------------

// An enrollment's guided capture: three shots in one sitting, each checked as it is taken, enrolled together.
const GUIDED_SHOTS = ["look straight at the camera", "turn your head slightly to your left",
                      "turn your head slightly to your right"];

function picker(container, { check = false } = {}) {
  container.replaceChildren($("#picker-template").content.cloneNode(true));
  const input = $("input[type=file]", container);
  const video = $("video", container);
  const start = $(".camera-start", container);
  const guided = $(".camera-guided", container);
  const take = $(".camera-take", container);
  const progress = $(".shots", container);
  const stop = $(".camera-stop", container);
  const figure = $(".preview", container);
  const canvas = $("canvas", container);
  const caption = $("figcaption", container);
  const checks = $(".checks", container);
  let blob = null;
  let image = null;
  let stream = null;
  let shots = null; // a guided capture's photos that passed, while there is one
  const cameraAvailable = Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
  start.hidden = !cameraAvailable;
  guided.hidden = !(cameraAvailable && check);

  function draw(face, good) {
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    if (face) {
      const [x, y, w, h] = face.box;
      context.lineWidth = Math.max(2, Math.round(canvas.width / 150));
      context.strokeStyle = good ? "#1a7f37" : "#c0392b";
      context.strokeRect(x, y, w, h);
    }
    figure.hidden = false;
  }

  // The enrollment check of the photo, shown; returns whether it passes (true when nothing is checked).
  async function assess() {
    checks.hidden = true;
    checks.replaceChildren();
    if (!check) return true;
    caption.textContent = "Looking for the face…";
    try {
      const result = await api("POST", "/enroll/check", { form: photoForm(blob) });
      draw(result.face, result.passes);
      caption.textContent = result.passes ? "Face found; the photo passes every check."
                                          : "Face found, but the photo fails a check:";
      for (const item of result.checks) {
        checks.append(el("li", { class: item.passed ? "pass" : "fail", text: item.text }));
      }
      checks.hidden = false;
      return result.passes;
    } catch (error) {
      caption.textContent = explain(error);
      return false;
    }
  }

  async function use(newBlob) {
    blob = newBlob;
    image = new Image();
    image.src = URL.createObjectURL(blob);
    await image.decode().catch(() => null);
    if (image.naturalWidth) draw(null, false);
    caption.textContent = "";
    return assess();
  }

  function camera(on) {
    video.hidden = !on;
    take.hidden = !on;
    stop.hidden = !on;
    start.hidden = on || !cameraAvailable;
    guided.hidden = on || !(cameraAvailable && check);
    if (!on && stream) {
      for (const track of stream.getTracks()) track.stop();
      stream = null;
    }
  }

  function guide(prefix = "") {
    take.textContent = `Take shot ${shots.length + 1} of ${GUIDED_SHOTS.length}`;
    caption.textContent = `${prefix}Shot ${shots.length + 1} of ${GUIDED_SHOTS.length}: ${GUIDED_SHOTS[shots.length]}.`;
    figure.hidden = false;
  }

  function single() {
    shots = null;
    progress.replaceChildren();
    progress.hidden = true;
    take.textContent = "Take the photo";
  }

  async function openCamera() {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user", width: { ideal: 1280 } } });
    } catch (error) {
      caption.textContent = `The camera is not available (${error.name}). Choose a file instead.`;
      figure.hidden = false;
      return false;
    }
    video.srcObject = stream;
    await video.play();
    camera(true);
    take.focus();
    return true;
  }

  input.addEventListener("change", () => { single(); if (input.files[0]) use(input.files[0]); });
  start.addEventListener("click", () => { single(); openCamera(); });
  guided.addEventListener("click", async () => {
    single();
    shots = [];
    if (await openCamera()) guide();
  });
  take.addEventListener("click", () => {
    const frame = document.createElement("canvas");
    frame.width = video.videoWidth;
    frame.height = video.videoHeight;
    frame.getContext("2d").drawImage(video, 0, 0);
    if (shots === null) camera(false);
    take.disabled = true;
    frame.toBlob(async (taken) => {
      const passes = await use(taken);
      take.disabled = false;
      if (shots === null) return;
      if (passes) {
        shots.push(taken);
        progress.append(el("li", { text: `Shot ${shots.length} (${GUIDED_SHOTS[shots.length - 1]}): passes every check` }));
        progress.hidden = false;
      }
      if (shots.length === GUIDED_SHOTS.length) {
        camera(false);
        caption.textContent = `${shots.length} shots, each passing every check: they are enrolled together.`;
      } else {
        guide(passes ? "" : "That shot fails a check (below): take it again. ");
      }
    }, "image/jpeg", 0.92);
  });
  stop.addEventListener("click", () => { camera(false); if (shots && shots.length < GUIDED_SHOTS.length) single(); });

  return {
    get blob() { return blob; },
    // what to send: a finished guided capture's shots, or the one photo
    get blobs() { return shots && shots.length === GUIDED_SHOTS.length ? [...shots] : blob ? [blob] : []; },
    showFace(face, good) { if (image && image.naturalWidth) draw(face, good); },
  };
}

function photoForm(...blobs) {
  const form = new FormData();
  blobs.forEach((blob, i) => form.append("image", blob, `photo-${i + 1}.jpg`));
  return form;
}

// --- employees -----------------------------------------------------------------------------------------------

async function loadEmployees() {
  const { offset, q } = state.employees;
  say("Loading employees…");
  const page = await api("GET", "/employees", { params: { offset, limit: PAGE.employees, q } });
  const body = $("#employees-table tbody");
  body.replaceChildren(...page.items.map((employee) => el("tr", {},
    el("td", {}, el("a", { href: `#employee/${encodeURIComponent(employee.employee_id)}`,
                           text: employee.employee_id })),
    el("td", { text: employee.name || "—" }),
    el("td", { text: String(employee.references.length) }),
    el("td", { text: employee.current_model ? when(employee.enrolled_at) : "older model: enroll again" }),
    el("td", { class: "actions" }, el("button", {
      type: "button", class: "danger", text: "Delete…", "aria-label": `Delete ${employee.employee_id}`,
      onclick: () => deleteEmployee(employee.employee_id),
    })),
  )));
  const shown = pager("#employees-pager", page);
  $("#employees-caption").textContent = q ? `Employees matching “${q}”: ${shown}` : `Employees: ${shown}`;
  say("");
}

// A page as the API answers it (items, total, offset, limit): sets its pager's buttons, and says which rows it
// shows ("21–25 of 25", or "none").
function pager(selector, page) {
  const [previous, next] = document.querySelectorAll(`${selector} button`);
  previous.disabled = page.offset === 0;
  next.disabled = page.offset + page.limit >= page.total;
  return page.items.length ? `${page.offset + 1}–${page.offset + page.items.length} of ${page.total}` : "none";
}

function confirmDialog(text, action = "Delete") {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

async function deleteEmployee(employeeId) {
  if (!await confirmDialog(`Delete ${employeeId}, their references and stored photos? This cannot be undone.`)) {
    return;
  }
  try {
    await api("DELETE", `/employees/${encodeURIComponent(employeeId)}`);
    say(`Deleted ${employeeId}.`);
    go("employees");
  } catch (error) {
    showError(error);
  }
}

let referencePicker = null;

async function loadEmployee(employeeId) {
  const employee = await api("GET", `/employees/${encodeURIComponent(employeeId)}`);
  state.employee = employee;
  $("#employee-title").textContent = employee.name ? `${employee.name} (${employee.employee_id})` : employee.employee_id;
  const facts = [["Employee id", employee.employee_id], ["Name", employee.name || "—"],
                 ["Enrolled", when(employee.enrolled_at)], ["Updated", when(employee.updated_at)],
                 ["Model", employee.current_model ? "current" : "older model: enroll again"]];
  const groups = employee.groups.length ? employee.groups.flatMap((groupId, i) => [i ? ", " : null,
    el("a", { href: `#group/${encodeURIComponent(groupId)}`, text: groupId })]) : ["none"];
  $("#employee-facts").replaceChildren(...facts.flatMap(([term, value]) => [el("dt", { text: term }),
                                                                             el("dd", { text: value })]),
                                       el("dt", { text: "Groups" }), el("dd", {}, ...groups));
  const only = employee.references.length === 1;
  $("#references").replaceChildren(...employee.references.map((reference) => el("li", {},
    el("span", { text: `Reference ${reference.reference}${reference.reference === 0 ? " (the enrollment's photo)" : ""}`
                       + ` · ${when(reference.enrolled_at)}` }),
    el("button", { type: "button", class: "danger", text: "Remove…", disabled: only,
                   title: only ? "The only reference: delete the employee instead" : null,
                   "aria-label": `Remove reference ${reference.reference}`,
                   onclick: () => removeReference(employee.employee_id, reference.reference) }),
  )));
  referencePicker = picker($("#reference-form .picker"), { check: true });
}

async function removeReference(employeeId, reference) {
  if (!await confirmDialog(`Remove reference ${reference} of ${employeeId}?`, "Remove")) return;
  try {
    await api("DELETE", `/employees/${encodeURIComponent(employeeId)}/references/${reference}`);
    say(`Removed reference ${reference}.`);
    await loadEmployee(employeeId);
  } catch (error) {
    showError(error);
  }
}

async function addReference(event) {
  event.preventDefault();
  clearError();
  if (!referencePicker.blob) return showError("Choose a photo, or take one with the camera, first.");
  const employeeId = state.employee.employee_id;
  try {
    const added = await api("POST", `/employees/${encodeURIComponent(employeeId)}/references`,
                            { form: photoForm(referencePicker.blob) });
    say(`Added reference ${added.reference}: ${employeeId} now has ${added.references}.`);
    await loadEmployee(employeeId);
  } catch (error) {
    showError(error);
  }
}

// --- groups --------------------------------------------------------------------------------------------------

async function loadGroups() {
  const { offset, q } = state.groups;
  say("Loading groups…");
  const page = await api("GET", "/groups", { params: { offset, limit: PAGE.groups, q } });
  $("#groups-table tbody").replaceChildren(...page.items.map((group) => el("tr", {},
    el("td", {}, el("a", { href: `#group/${encodeURIComponent(group.group_id)}`, text: group.group_id })),
    el("td", { text: group.name || "—" }),
    el("td", { text: String(group.members) }),
    el("td", { class: "actions" }, el("button", {
      type: "button", class: "danger", text: "Delete…", "aria-label": `Delete group ${group.group_id}`,
      onclick: () => deleteGroup(group.group_id),
    })),
  )));
  const shown = pager("#groups-pager", page);
  $("#groups-caption").textContent = q ? `Groups matching “${q}”: ${shown}` : `Groups: ${shown}`;
  say("");
}

async function createGroup(event) {
  event.preventDefault();
  clearError();
  const form = event.target;
  if (!form.reportValidity()) return;
  const body = new FormData();
  const groupId = field(form, "group_id").value.trim();
  body.append("group_id", groupId);
  const name = field(form, "name").value.trim();
  if (name) body.append("name", name);
  try {
    await api("POST", "/groups", { form: body });
    form.reset();
    say(`Created group ${groupId}.`);
    go(`group/${encodeURIComponent(groupId)}`);
  } catch (error) {
    showError(error);
  }
}

async function deleteGroup(groupId) {
  if (!await confirmDialog(`Delete group ${groupId}? Its members stay enrolled; the doors' keys bound to it will `
                           + "admit no one through it.")) return;
  try {
    await api("DELETE", `/groups/${encodeURIComponent(groupId)}`);
    say(`Deleted group ${groupId}.`);
    go("groups");
  } catch (error) {
    showError(error);
  }
}

async function loadGroup(groupId) {
  if (!state.group || state.group.group_id !== groupId) state.members = { offset: 0, q: "" };
  const group = await api("GET", `/groups/${encodeURIComponent(groupId)}`);
  state.group = group;
  $("#group-title").textContent = group.name ? `${group.name} (${group.group_id})` : group.group_id;
  const facts = [["Group id", group.group_id], ["Name", group.name || "—"], ["Members", String(group.members)],
                 ["Created", when(group.created_at)], ["Updated", when(group.updated_at)]];
  $("#group-facts").replaceChildren(...facts.flatMap(([term, value]) => [el("dt", { text: term }),
                                                                          el("dd", { text: value })]));
  $("#group-rename").value = group.name || "";
  $("#members-search").value = state.members.q;
  const { offset, q } = state.members;
  const page = await api("GET", `/groups/${encodeURIComponent(groupId)}/members`,
                         { params: { offset, limit: PAGE.members, q } });
  $("#members-table tbody").replaceChildren(...page.items.map((employee) => el("tr", {},
    el("td", {}, el("a", { href: `#employee/${encodeURIComponent(employee.employee_id)}`,
                           text: employee.employee_id })),
    el("td", { text: employee.name || "—" }),
    el("td", { class: "actions" }, el("button", {
      type: "button", class: "danger", text: "Remove", "aria-label": `Remove ${employee.employee_id} from the group`,
      onclick: () => removeMember(group.group_id, employee.employee_id),
    })),
  )));
  const shown = pager("#members-pager", page);
  $("#members-caption").textContent = q ? `Members matching “${q}”: ${shown}` : `Members: ${shown}`;
}

async function renameGroup(event) {
  event.preventDefault();
  clearError();
  const groupId = state.group.group_id;
  const body = new FormData();
  const name = $("#group-rename").value.trim();
  if (name) body.append("name", name);
  try {
    await api("PATCH", `/groups/${encodeURIComponent(groupId)}`, { form: body });
    say(name ? `Renamed ${groupId} to “${name}”.` : `Removed ${groupId}'s name.`);
    await loadGroup(groupId);
  } catch (error) {
    showError(error);
  }
}

async function addMembers(event) {
  event.preventDefault();
  clearError();
  const groupId = state.group.group_id;
  const ids = [...new Set($("#member-add").value.split(/[\s,;]+/).filter(Boolean))];
  if (!ids.length) return showError("Type the ids of the employees to add.");
  try {
    const added = await api("POST", `/groups/${encodeURIComponent(groupId)}/members`,
                            { json: { employee_ids: ids } });
    const missing = added.not_found.length ? ` No employee has the id ${added.not_found.join(", ")}.` : "";
    say(`Added ${added.added} to ${groupId} (${added.already} were members already).${missing}`);
    if (added.not_found.length) showError(`No employee has the id ${added.not_found.join(", ")}; the others were added.`);
    $("#member-add").value = "";
    await loadGroup(groupId);
  } catch (error) {
    showError(error);
  }
}

async function removeMember(groupId, employeeId) {
  clearError();
  try {
    await api("DELETE", `/groups/${encodeURIComponent(groupId)}/members/${encodeURIComponent(employeeId)}`);
    say(`Removed ${employeeId} from ${groupId}.`);
    await loadGroup(groupId);
  } catch (error) {
    showError(error);
  }
}

// --- enroll --------------------------------------------------------------------------------------------------

let enrollPicker = null;

async function enroll(event) {
  event.preventDefault();
  clearError();
  const form = event.target;
  if (!form.reportValidity()) return;
  const photos = enrollPicker.blobs;
  if (!photos.length) return showError("Choose a photo, or take one with the camera, first.");
  const body = photoForm(...photos);
  body.append("employee_id", field(form, "employee_id").value.trim());
  const name = field(form, "name").value.trim();
  if (name) body.append("name", name);
  const params = { replace: field(form, "replace").checked || null, force: field(form, "force").checked || null };
  const result = $("#enroll-result");
  result.hidden = true;
  try {
    const enrolled = await api("POST", "/enroll", { form: body, params });
    enrollPicker.showFace(enrolled.face, true);
    result.replaceChildren(
      el("p", { class: "verdict match", text: (enrolled.replaced ? `Replaced the reference photo of ${enrolled.employee_id}`
                                                                  : `Enrolled ${enrolled.employee_id}`)
                                               + (enrolled.references > 1 ? ` with ${enrolled.references} photos` : "") }),
      el("p", {}, el("a", { href: `#employee/${encodeURIComponent(enrolled.employee_id)}`,
                            text: "See the employee" })),
    );
    result.hidden = false;
    say(enrolled.replaced ? `Replaced ${enrolled.employee_id}'s reference photo.` : `Enrolled ${enrolled.employee_id}.`);
  } catch (error) {
    showError(error);
  }
}

// --- verify and identify -------------------------------------------------------------------------------------

let tryPicker = null;

// The decision as a picture: the photo's distance (rule "distance": a scale from 0, accepted below the threshold)
// or its normalised score (rule "as-norm": accepted above the threshold) against the threshold, marked on a
// scale whose accepted part is green.
function meter(value, threshold, rule) {
  const ns = "http://www.w3.org/2000/svg";
  const byScore = rule === "as-norm";
  const what = byScore ? "score" : "distance";
  const start = byScore ? Math.min(-2, (value ?? 0) - 1) : 0;
  const end = byScore ? Math.max(threshold + 4, (value ?? 0) + 1) : Math.max(1.2, (value ?? 0) + 0.1, threshold + 0.2);
  const x = (v) => 10 + (580 * (Math.min(Math.max(v, start), end) - start)) / (end - start);
  const node = (tag, attributes, text) => {
    const shape = document.createElementNS(ns, tag);
    for (const [name, v] of Object.entries(attributes)) shape.setAttribute(name, v);
    if (text) shape.textContent = text;
    return shape;
  };
  const within = value !== null && (byScore ? value >= threshold : value <= threshold);
  const words = value === null ? `threshold ${threshold.toFixed(3)}; nobody is close enough`
    : `${what} ${value.toFixed(3)} ${within ? "passes" : "fails"} the threshold ${threshold.toFixed(3)}`;
  const svg = node("svg", { viewBox: "0 0 600 90", class: "meter", role: "img", "aria-label": words });
  const [good, bad] = ["#c8e6c9", "#f8d7da"];
  svg.append(
    node("rect", { x: 10, y: 30, width: x(threshold) - 10, height: 18, fill: byScore ? bad : good }),
    node("rect", { x: x(threshold), y: 30, width: 590 - x(threshold), height: 18, fill: byScore ? good : bad }),
    node("line", { x1: x(threshold), x2: x(threshold), y1: 22, y2: 56, stroke: "#1b1f24", "stroke-width": 2 }),
    node("text", { x: x(threshold), y: 16, "text-anchor": "middle", "font-size": 13 },
         `threshold ${threshold.toFixed(3)}`),
    node("text", { x: 10, y: 72, "font-size": 12, fill: "#57606a" }, byScore ? "like anyone" : "0: the same face"),
    node("text", { x: 590, y: 72, "font-size": 12, fill: "#57606a", "text-anchor": "end" },
         byScore ? "like this employee only" : "farther: other people"),
  );
  if (value !== null) {
    svg.append(
      node("circle", { cx: x(value), cy: 39, r: 8, fill: within ? "#1a7f37" : "#c0392b" }),
      node("text", { x: x(value), y: 86, "text-anchor": "middle", "font-size": 13, "font-weight": 700 },
           `${what} ${value.toFixed(3)}`),
    );
  }
  return svg;
}

async function tryPhoto(event) {
  event.preventDefault();
  clearError();
  const form = event.target;
  const mode = field(form, "mode").value;
  if (!tryPicker.blob) return showError("Choose a photo, or take one with the camera, first.");
  const body = photoForm(tryPicker.blob);
  const result = $("#try-result");
  result.hidden = true;
  try {
    if (mode === "verify") {
      const employeeId = field(form, "employee_id").value.trim();
      if (!employeeId) return showError("Type the employee id to verify against.");
      body.append("employee_id", employeeId);
      const answer = await api("POST", "/verify", { form: body });
      tryPicker.showFace(answer.face, answer.match);
      result.replaceChildren(
        el("p", { class: `verdict ${answer.match ? "match" : "no-match"}`,
                  text: answer.match ? `Match: this is ${answer.employee_id}` : `No match: not ${answer.employee_id}` }),
        meter(answer.rule === "as-norm" ? answer.score : answer.distance, answer.threshold, answer.rule),
        el("p", { class: "help", text: `Compared with ${answer.references} reference${answer.references > 1 ? "s" : ""}, `
                                       + `fused into one template (distance ${answer.distance.toFixed(3)}). `
                                       + (answer.rule === "as-norm" ? "The score, normalised against faces of other "
                                          + "people, decides: above the threshold is a match."
                                          : "Below the threshold is a match.") }),
      );
    } else {
      const group = field(form, "group").value.trim();
      if (group && state.scope === "admin") body.append("group", group);
      const answer = await api("POST", "/identify", { form: body });
      const best = answer.match || answer.candidates[0] || null;
      tryPicker.showFace(answer.face, Boolean(answer.match));
      result.replaceChildren(
        el("p", { class: `verdict ${answer.match ? "match" : "no-match"}`,
                  text: answer.match ? `This is ${answer.match.employee_id}${answer.match.name ? ` (${answer.match.name})` : ""}`
                                     : "Unknown: nobody in the gallery is close enough" }),
        el("p", { class: "help", text: `Searched ${answer.searched} employee${answer.searched === 1 ? "" : "s"}`
                                       + (group ? ` of group ${group}` : "") + "." }),
        meter(best ? (answer.rule === "as-norm" ? best.score : best.distance) : null, answer.threshold, answer.rule),
        answer.candidates.length ? el("ol", {}, ...answer.candidates.map((c) => el("li", {
          text: `${c.employee_id}${c.name ? ` (${c.name})` : ""}: distance ${c.distance.toFixed(3)}`
                + (c.score === null ? "" : `, score ${c.score.toFixed(2)}`) }))) : null,
      );
    }
    result.hidden = false;
  } catch (error) {
    showError(error);
  }
}

// The try form's fields for its question: an employee id to verify against; a group to identify within (an
// admin's key: a door's view; a door's key searches its own groups already).
function tryFields() {
  const verifying = field($("#try-form"), "mode").value === "verify";
  const grouping = !verifying && state.scope === "admin";
  for (const [id, shown] of [["try-id", verifying], ["try-group", grouping]]) {
    $(`#${id}`).disabled = !shown;
    $(`#${id}`).hidden = !shown;
    $(`label[for=${id}]`).hidden = !shown;
  }
}

// --- audit ---------------------------------------------------------------------------------------------------

async function loadAudit() {
  const { offset, filters } = state.audit;
  say("Loading the audit log…");
  const page = await api("GET", "/audit", { params: { offset, limit: PAGE.audit, ...filters } });
  $("#audit-table tbody").replaceChildren(...page.items.map((row) => el("tr", {},
    el("td", { text: when(row.at) }),
    el("td", { text: row.action }),
    el("td", { text: row.employee_id || "—" }),
    el("td", { text: row.decision }),
    el("td", { text: row.distance === null ? "—" : `${row.distance.toFixed(3)} / ${row.threshold === null ? "—"
                                                                                   : row.threshold.toFixed(3)}` }),
    el("td", { text: row.groups || "—" }),
    el("td", { text: row.key_id || "—" }),
  )));
  $("#audit-caption").textContent = `Audit records, newest first: ${pager("#audit-pager", page)}`;
  say("");
}

function auditFilters(form) {
  const iso = (value) => (value ? new Date(value).toISOString() : "");
  return {
    employee_id: field(form, "employee_id").value.trim(), action: field(form, "action").value,
    since: iso(field(form, "since").value), until: iso(field(form, "until").value),
  };
}

// --- wiring --------------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", async () => {
  $("#signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    try {
      await signIn($("#key").value.trim());
      go(home());
      $(`nav button[data-view="${home()}"]`).focus(); // the sign-in form is gone: keyboard users start at the sections
    } catch (error) {
      showError(error);
    }
  });
  $("#sign-out").addEventListener("click", () => signOut());
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => go(button.dataset.view));
  }
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.employees = { offset: 0, q: $("#search").value.trim() };
    route();
  });
  $("#audit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.audit = { offset: 0, filters: auditFilters(event.target) };
    route();
  });
  $("#groups-search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.groups = { offset: 0, q: $("#groups-search").value.trim() };
    route();
  });
  $("#members-search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.members = { offset: 0, q: $("#members-search").value.trim() };
    route();
  });
  $("#group-create-form").addEventListener("submit", createGroup);
  $("#group-rename-form").addEventListener("submit", renameGroup);
  $("#member-add-form").addEventListener("submit", addMembers);
  $("#group-delete").addEventListener("click", () => deleteGroup(state.group.group_id));
  for (const [selector, list, size] of [["#employees-pager", "employees", PAGE.employees],
                                        ["#groups-pager", "groups", PAGE.groups],
                                        ["#members-pager", "members", PAGE.members],
                                        ["#audit-pager", "audit", PAGE.audit]]) {
    for (const button of document.querySelectorAll(`${selector} button`)) {
      button.addEventListener("click", () => {
        state[list].offset = Math.max(0, state[list].offset + Number(button.dataset.page) * size);
        route();
      });
    }
  }
  $("#employee-delete").addEventListener("click", () => deleteEmployee(state.employee.employee_id));
  $("#employee-replace").addEventListener("click", () => {
    go("enroll");
    $("#enroll-id").value = state.employee.employee_id;
    $("#enroll-replace").checked = true;
  });
  $("#reference-form").addEventListener("submit", addReference);
  $("#enroll-form").addEventListener("submit", enroll);
  $("#try-form").addEventListener("submit", tryPhoto);
  for (const radio of document.querySelectorAll("#try-form input[name=mode]")) {
    radio.addEventListener("change", tryFields);
  }
  enrollPicker = picker($("#enroll-form .picker"), { check: true });
  tryPicker = picker($("#try-form .picker"));
  window.addEventListener("hashchange", route);

  if (sessionStorage.getItem(SIGNED_IN)) {
    try {
      await signIn(sessionStorage.getItem(KEY) || "");
    } catch (error) {
      showError(error);
    }
  }
  route();
});
