// Words for people: a parameter's readable name, numbers, durations, times.

const NAMES = {
  lr: "Learning rate",
  learning_rate: "Learning rate",
  head_lr_scale: "Head learning-rate scale",
  seed: "Random seed",
  model_name: "Model",
  batch_size: "Batch size",
  print_frequency: "Report every N batches",
  skip_invalid: "Skip unreadable images",
  val_loss: "Validation loss",
  val_top1: "Validation accuracy",
  train_loss: "Training loss",
  train_top1: "Training accuracy",
  top5_accuracy: "Top-5 accuracy",
  log_loss: "Log loss",
  ece: "Calibration error (ECE)",
};
const WORDS = { lr: "learning rate", val: "validation", num: "number of", img: "image", imgs: "images", top1: "top-1",
  onnx: "ONNX", cpu: "CPU", gpu: "GPU", cuda: "CUDA", id: "ID", ece: "ECE", fp16: "FP16", bf16: "BF16", fp32: "FP32" };

/** "learning_rate" -> "Learning rate", "random_resized_crop_size" -> "Random resized crop size". */
export function readable(name) {
  if (NAMES[name]) return NAMES[name];
  const words = String(name).split(/[_\s]+/).filter(Boolean).map((w) => WORDS[w.toLowerCase()] ?? w.toLowerCase());
  const text = words.join(" ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** A number as people read it: integers as they are, others with 3-4 significant digits. */
export function number(value, digits = 4) {
  if (value === null || value === undefined || value === "") return "";
  if (typeof value !== "number") return String(value);
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en");
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(2);
  return String(Number(value.toPrecision(digits)));
}

export const percent = (value, digits = 1) =>
  value === null || value === undefined ? "" : `${(100 * value).toFixed(digits)}%`;

/** Seconds as "0:42", "12:05" or "1:02:03". */
export function clock(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

/** A time the API gives (ISO text or seconds since 1970) as milliseconds, or null. */
export function when(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value > 1e12 ? value : value * 1000;
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? null : parsed;
}

/** A time for the runs' table: "14:05" today, else "3 May 14:05". */
export function shortTime(value) {
  const ms = when(value);
  if (ms === null) return "";
  const date = new Date(ms);
  const time = date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString("en-GB", { day: "numeric", month: "short" })} ${time}`;
}

/** How long a run took (or has taken so far). */
export function duration(started, ended) {
  const a = when(started);
  if (a === null) return "";
  const b = when(ended) ?? Date.now();
  return clock((b - a) / 1000);
}

/** A value of a card or a parameter table: booleans as yes/no, lists joined. */
export function shown(value) {
  if (value === true) return "yes";
  if (value === false) return "no";
  if (value === null || value === undefined) return "–";
  if (Array.isArray(value)) return value.map(shown).join(", ");
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k}: ${shown(v)}`).join(", ");
  return number(value);
}
