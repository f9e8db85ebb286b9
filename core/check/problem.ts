// What every `lilt check` part reports: one problem per line, an error (exit 1) or a warning
// (exit 0), so the parts can be run alone or together by `lilt check all`.

/** One finding of a check: what is wrong and how to fix it, on one line. */
export interface Problem {
  /** `error` makes `lilt check` exit 1; `warning` is printed but keeps exit 0. */
  level: "error" | "warning";
  /** One line: what is wrong, then the fix. */
  message: string;
}
