// The config fuzz target: validates mutated TOML with parseConfigText (core/config.ts), with the
// built-in modules' options declared as `lilt start` declares them, and checks that bad input
// only ever comes back as problems: no exception, a config exactly when no problem is an error,
// and every problem with a line inside the file and a message.

import type { OptionSpec } from "../../core/config_schema.ts";
import { formatProblem, parseConfigText } from "../../core/config.ts";
import { builtinModules } from "../../mod/builtin.ts";
import { FuzzFinding, type FuzzTarget, shape } from "./target.ts";

const moduleOptions: Record<string, OptionSpec> = {};
for (const file of Object.values(builtinModules)) Object.assign(moduleOptions, file.options ?? {});

/**
 * Where the fuzzed file claims to be: a directory that does not exist, so paths the config names
 * (key files, certificates) are looked up and never found, and nothing is left behind.
 */
const FILE = "/nonexistent-lilt-fuzz/lilt.toml";

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** The config loader target. */
export const configTarget: FuzzTarget = {
  name: "config",
  maxLength: 8192,
  dictionary: [
    "\n",
    "[[host]]\n",
    "[[component]]\n",
    "[log]\n",
    "[storage]\n",
    "[host]\n",
    "domain = ",
    "data_dir = ",
    "modules = ",
    "admins = ",
    "c2s_interfaces = ",
    '"localhost"',
    '"127.0.0.1:0"',
    '"[::1]:5222"',
    '"0.0.0.0:99999"',
    "[]",
    '["a", 1]',
    "{ a = 1 }",
    '"""',
    "'''",
    "\\u0000",
    "\\uD800",
    "\\",
    "=",
    "#",
    ".",
    "-1",
    "0",
    "1e309",
    "9223372036854775808",
    "nan",
    "inf",
    "true",
    "1979-05-27T07:32:00Z",
    '"juliet@example.com"',
    '"\u00e9\u00e9.example"',
    "__proto__",
    "constructor",
    "toString",
    "hasOwnProperty",
  ],
  check(input: string): string {
    const file = FILE;
    let result;
    try {
      result = parseConfigText(input, file, { moduleOptions });
    } catch (error) {
      throw new FuzzFinding("exception", `parseConfigText threw ${describe(error)}`);
    }
    const errors = result.problems.filter((p) => p.severity === "error");
    if ((result.config === undefined) !== (errors.length > 0)) {
      throw new FuzzFinding(
        "result",
        result.config === undefined ? "no config and no error" : "a config despite errors",
      );
    }
    const lines = input.split("\n").length;
    for (const problem of result.problems) {
      if (
        !Number.isInteger(problem.line) || problem.line < 0 || problem.line > lines + 1 ||
        typeof problem.message !== "string" || problem.message === "" || problem.file !== file
      ) {
        throw new FuzzFinding("problem", `malformed problem ${JSON.stringify(problem)}`);
      }
      formatProblem(problem);
    }
    const first = errors[0] ?? result.problems[0];
    return first ? `${first.severity} ${shape(first.message)}` : "ok";
  },
};
