// The one way the page talks to the studio: same-origin fetch with the studio's cookie, JSON in and out, and an
// answer {"error": "..."} turned into an ApiError carrying the server's message (and a refused run's problems).

export class ApiError extends Error {
  constructor(message, status, problems = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.problems = problems;
  }
}

/** Sent to everyone who shows messages: api() failures that nobody caught (see studio.js). */
export const apiErrors = new EventTarget();

/**
 * Call the API. `json` is sent as a JSON body; `body` as it is (a File), with `contentType`.
 * Resolves to the parsed JSON answer; rejects with an ApiError whose message is the server's `error` text.
 */
export async function api(path, { method = "GET", json, body, contentType, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (body !== undefined && contentType) {
    headers["Content-Type"] = contentType;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, credentials: "same-origin", signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("The studio does not answer: is `imgtrain studio` still running?", 0);
  }
  const answer = await readAnswer(response);
  if (!response.ok) throw new ApiError(errorText(response, answer), response.status, problemsOf(answer));
  return answer;
}

async function readAnswer(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null; // not JSON (an HTML error page): the status line says what happened
  }
}

function errorText(response, answer) {
  if (answer && typeof answer.error === "string") return answer.error;
  if (answer && typeof answer.detail === "string") return answer.detail;
  if (response.status === 401) return "Open the URL that `imgtrain studio` printed (it carries the token).";
  return `${response.status} ${response.statusText || "error"}`.trim();
}

function problemsOf(answer) {
  if (!answer || !Array.isArray(answer.problems)) return [];
  return answer.problems.map((p) => ({ node: p.node ?? null, field: p.field ?? null, message: String(p.message) }));
}

/** A URL of the API with query parameters. */
export function url(path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined && value !== null) params.set(key, value);
  const search = params.toString();
  return search ? `${path}?${search}` : path;
}

/** The URL of a file of a run's folder (thumbnails, plots). */
export function runFile(runId, path) {
  return `/api/runs/${runId}/files/${String(path).split("/").map(encodeURIComponent).join("/")}`;
}
