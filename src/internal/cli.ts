/**
 * The command-line client, built with Effect's own `effect/cli`: for now the one command that needs no socket,
 * `check <old> <new>`, which compares two gateway snapshots (as `describe --json` will write them) and prints the
 * report. The commands that talk to a service (`ping`, `list`, `describe`, `call`) join it when the protocol can
 * answer them (issue 16, phase 2).
 *
 * Exit codes: 0 compatible under the policy, 1 incompatible, 2 the command could not run (a file that cannot be
 * read or is not a snapshot, a wrong argument).
 */
import { Argument, CliError, Command, Flag } from "effect/cli"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as RpcCompatibility from "../RpcCompatibility.js"

/** The package version the client reports with `--version` (kept equal to package.json by a test). */
export const VERSION = "0.1.0"

/** The process exit codes of the client. */
export const ExitCode = { Compatible: 0, Incompatible: 1, Usage: 2 } as const

/**
 * Why a command ends without success, with the exit code it ends the process with. The command has printed all
 * there is to say (the report, or the error on stderr) before it fails, so the runtime logs nothing more.
 */
export class CliFailure extends Schema.TaggedError<CliFailure>()("CliFailure", {
  exitCode: Schema.Number,
  detail: Schema.String
}) {
  override get message(): string {
    return this.detail
  }

  override get [Runtime.errorExitCode](): number {
    return this.exitCode
  }

  override get [Runtime.errorReported](): boolean {
    return false
  }
}

const usage = (detail: string) =>
  Effect.flatMap(Console.error(detail), () => Effect.fail(new CliFailure({ exitCode: ExitCode.Usage, detail })))

const readSnapshot = Effect.fnUntraced(function*(path: string) {
  const fs = yield* FileSystem.FileSystem
  const text = yield* fs.readFileString(path).pipe(
    Effect.catch((error) => usage(`Cannot read the snapshot ${path}: ${error.message}`))
  )
  return yield* RpcCompatibility.decodeSnapshot(text, { source: path }).pipe(
    Effect.catch((error) => usage(error.message))
  )
})

/** `check <old> <new> [--policy exact|backward|both] [--json]`. */
export const check = Command.make(
  "check",
  {
    older: Argument.String("old").pipe(
      Argument.withDescription("the snapshot of the older version (a file describe --json wrote)")
    ),
    newer: Argument.String("new").pipe(Argument.withDescription("the snapshot of the newer version")),
    policy: Flag.Literals("policy", ["exact", "backward", "both"]).pipe(
      Flag.withDescription(
        "exact: any difference refuses; backward: new endpoints must serve old callers; both: calls must work both ways"
      ),
      Flag.withDefault("both")
    ),
    json: Flag.Boolean("json").pipe(
      Flag.withDescription("print the report as JSON: gateway, fingerprints, policy, accept and the issues"),
      Flag.withDefault(false)
    )
  },
  Effect.fnUntraced(function*({ json, newer, older, policy }) {
    const before = yield* readSnapshot(older)
    const after = yield* readSnapshot(newer)
    const report = RpcCompatibility.check(before, after)
    const verdict = RpcCompatibility.evaluate(report, policy)
    yield* Console.log(
      json
        ? JSON.stringify({ ...report, policy, accept: verdict.accept }, null, 2)
        // The report lists every issue; the verdict's first line says what the policy decided.
        : `${RpcCompatibility.format(report)}\n\n${verdict.message.split("\n")[0]}`
    )
    if (!verdict.accept) {
      return yield* new CliFailure({ exitCode: ExitCode.Incompatible, detail: verdict.message })
    }
  })
).pipe(
  Command.withDescription(
    "Compare two gateway snapshots and report what breaks, in each direction, during a rolling upgrade"
  ),
  Command.withExamples([
    { command: "effect-actor-rpc check v1.json v2.json", description: "is v2 compatible with v1 both ways?" },
    { command: "effect-actor-rpc check v1.json v2.json --policy backward --json", description: "for a script" }
  ])
)

/** The root command. */
export const root = Command.make("effect-actor-rpc").pipe(
  Command.withDescription("The command-line client of effect-actor-rpc"),
  Command.withSubcommands([check])
)

/**
 * Runs the client on `args`; a usage error (unknown option, missing argument) ends with exit code 2, after the
 * runner has printed it with the help.
 */
export const run = (args: ReadonlyArray<string>) =>
  Command.runWith(root, { version: VERSION })(args).pipe(
    Effect.catchIf(
      (error): error is CliError.CliError => CliError.isCliError(error),
      (error) =>
        Effect.fail(
          // The runner has printed the help and the errors.
          new CliFailure({ exitCode: ExitCode.Usage, detail: error.message })
        )
    )
  )
