// facegate door screen: a tablet at the door asks for a head-turn challenge, films the answer and sends it to
// /identify. Plain JavaScript, no build step, no CDN: every call goes to this service only.
"use strict";

const KEY = "facegate.door.key"; // sessionStorage only: gone when the tab closes
const GROUP = "facegate.door.group";
// The burst: a frame every 250 ms, as the camera gives it up to 640 px wide (the landmarks the check reads need
// the face large), JPEG at 0.92.
const FRAME_MS = 250;
const STEADY_FRAMES = 3; // facing the camera first: the baseline the turns are measured from
const TURN_FRAMES = 6; // 1.5 s to turn
const BACK_FRAMES = 3; // 0.75 s to face the camera again
const MAX_WIDTH = 640;
const ANSWER_MS = 6000; // how long an answer stays on screen
const SAY = {
  steady: "Look at the camera",
  left: "Turn your head to your left ←",
  right: "Turn your head to your right →",
  back: "Look at the camera again",
  checking: "Checking…",
};
// The API's refusals, worded for the person at the door.
const WORDS = {
  liveness_failed: "The head turn was not clear. Please try again, following the prompts.",
  no_face: "No face was seen. Stand in front of the camera and try again.",
  multiple_faces: "One person at a time, please.",
  not_one_person: "One person at a time, please.",
  too_many_attempts: "Too many attempts. Please wait, or ask for help.",
  challenge_expired: "That took too long. Please try again.",
  unauthorized: "This door screen's key is not valid. Ask an administrator.",
  network: "The service cannot be reached. Please ask for help.",
};

const $ = (selector) => document.querySelector(selector);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let run = null; // the attempt in progress: { cancelled, stream }

async function call(path, form) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers["X-API-Key"] = key;
  let response;
  try {
    response = await fetch(path, { method: "POST", headers, body: form });
  } catch {
    throw Object.assign(new Error("the service could not be reached"), { code: "network" });
  }
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: a proxy's page */ }
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw Object.assign(new Error(error.message || response.statusText), { code: error.code || "http_error" });
  }
  return body;
}

function say(text) { $("#door-prompt").textContent = text; }

function answer(text, kind = "") {
  const node = $("#door-answer");
  node.textContent = text;
  node.className = `answer ${kind}`;
}

function frame(video) {
  const scale = Math.min(1, MAX_WIDTH / video.videoWidth);
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
}

// Frames are due every FRAME_MS from the first one, whatever encoding each takes: a slow tablet's frames keep
// the prompts' pace instead of falling further behind at every frame.
async function capture(video, count, frames) {
  for (let i = 0; i < count; i++) {
    if (run.cancelled) throw Object.assign(new Error("cancelled"), { code: "cancelled" });
    run.due = run.due === null ? performance.now() : run.due + FRAME_MS;
    await sleep(Math.max(0, run.due - performance.now()));
    frames.push(await frame(video));
  }
}

async function openCamera(video) {
  run.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480, facingMode: "user" } });
  video.srcObject = run.stream;
  if (video.readyState < 2) await new Promise((resolve) => video.addEventListener("playing", resolve, { once: true }));
}

function closeCamera() {
  if (run && run.stream) for (const track of run.stream.getTracks()) track.stop();
  $("#door-video").srcObject = null;
}

async function attempt() {
  run = { cancelled: false, stream: null, due: null }; // due: when the next frame is to be taken
  $("#door-start").hidden = true;
  $("#door-cancel").hidden = false;
  answer("");
  const video = $("#door-video");
  try {
    const challenge = await call("/liveness/challenge", null);
    $("#door-screen").dataset.prompts = challenge.prompts.join(",");
    await openCamera(video);
    const frames = [];
    say(SAY.steady);
    await capture(video, STEADY_FRAMES, frames);
    for (const prompt of challenge.prompts) {
      say(SAY[prompt]);
      await capture(video, TURN_FRAMES, frames);
      say(SAY.back);
      await capture(video, BACK_FRAMES, frames);
    }
    closeCamera();
    say(SAY.checking);
    const form = new FormData();
    form.append("challenge_id", challenge.challenge_id);
    const group = sessionStorage.getItem(GROUP);
    if (group) form.append("group", group);
    frames.forEach((blob, i) => form.append("image", blob, `frame-${i}.jpg`));
    const result = await call("/identify", form);
    if (result.match) answer(`Welcome, ${result.match.name || result.match.employee_id}`, "granted");
    else answer("Not recognised.", "refused");
  } catch (error) {
    if (error.code !== "cancelled") answer(WORDS[error.code] || `Refused: ${error.message}`, "refused");
  } finally {
    closeCamera();
    say("");
    $("#door-cancel").hidden = true;
    $("#door-start").hidden = false;
    run = null;
  }
  setTimeout(() => { if (!run) answer(""); }, ANSWER_MS);
}

function setUp(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("#door-key").value.trim());
  sessionStorage.setItem(GROUP, $("#door-group").value.trim());
  $("#door-setup").hidden = true;
  $("#door-screen").hidden = false;
  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) {
    answer("This browser has no camera access (it needs https, or localhost).", "refused");
    $("#door-start").disabled = true;
  }
}

$("#door-setup").addEventListener("submit", setUp);
$("#door-start").addEventListener("click", attempt);
$("#door-cancel").addEventListener("click", () => { if (run) run.cancelled = true; });
