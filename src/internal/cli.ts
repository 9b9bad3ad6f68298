/**
 * The command-line client, built with Effect's own `effect/cli`, in the spirit of grpcurl:
 *
 * - `ping <address>`: hello and handshakes, round-trip times, protocol version, the peer's incarnation;
 * - `list <address>`: the service's endpoints and their gateways (reflection);
 * - `describe <address>`: an endpoint's methods with their payload, success and failure types (`--json` writes the
 *   snapshot that `check` reads);
 * - `call <address> <method> [json]`: a call with a payload given as JSON, the outcome printed as JSON;
 * - `check <old> <new>`: the compatibility check of two snapshots.
 *
 * The commands that talk to a service are in ./cliRemote.ts; this module holds the command line and what is printed.
 * Every command prints what it has to say (data on stdout, diagnostics on stderr) and ends with an exit code that
 * says what failed: {@link ExitCode}.
 */
import { Argument, CliError, Command, Flag } from "effect/cli"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as RpcCompatibility from "../RpcCompatibility.js"
import type * as RpcReflection from "../RpcReflection.js"
import * as Remote from "./cliRemote.js"

/** The package version the client reports with `--version` (kept equal to package.json by a test). */
export const VERSION = "0.1.0"

/**
 * The process exit codes of the client: 0 success (or compatible); 1 a negative answer (incompatible snapshots, or
 * a call that failed with its method's declared failure); 2 the command could not run as given (arguments, files,
 * JSON that does not match the Schema); 3 no connection (refused, unreachable, untrusted, another protocol version,
 * a connect timeout); 4 not found (no such endpoint, gateway or method, or reflection is off); 5 the call failed
 * with one of the library's errors (a timeout, a fencing token, an endpoint not started...).
 */
export const ExitCode = {
  Compatible: 0,
  Ok: 0,
  Incompatible: 1,
  Failure: 1,
  Usage: 2,
  Unreachable: 3,
  NotFound: 4,
  CallError: 5
} as const

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

const exitCodeOf: Record<Remote.RemoteFailure["kind"], number> = {
  usage: ExitCode.Usage,
  unreachable: ExitCode.Unreachable,
  notFound: ExitCode.NotFound,
  callError: ExitCode.CallError
}

/** Prints a remote command's failure on stderr (and as JSON on stdout with `--json`), and ends with its exit code. */
const reported = (json: boolean) => (failure: Remote.RemoteFailure) =>
  Effect.gen(function*() {
    if (json) yield* Console.log(JSON.stringify({ error: { kind: failure.kind, message: failure.detail } }, null, 2))
    yield* Console.error(failure.detail)
    return yield* new CliFailure({ exitCode: exitCodeOf[failure.kind], detail: failure.detail })
  })

// ---------------------------------------------------------------------------------------------------------------
// Flags every command that talks to a service takes
// ---------------------------------------------------------------------------------------------------------------

/** "5s", "500ms", "2m", a number of seconds, or one of Effect's duration strings ("5 seconds"). */
export const parseDuration = (text: string): Duration.Duration | undefined => {
  const short = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim())
  if (short !== null) {
    const n = Number(short[1])
    return short[2] === "ms" ? Duration.millis(n) : short[2] === "m" ? Duration.minutes(n) : Duration.seconds(n)
  }
  return Option.getOrUndefined(Duration.fromInput(text as Duration.Input))
}

const connectionFlags = {
  timeout: Flag.String("timeout").pipe(
    Flag.withDescription("how long the connect, and then the call, may take: 5s, 500ms, 2m (default 5s)"),
    Flag.withDefault("5s")
  ),
  key: Flag.String("key").pipe(
    Flag.withDescription("rpcs:// only: this client's TLS private key, a PEM file (else RPC_TLS_KEY)"),
    Flag.optional
  ),
  cert: Flag.String("cert").pipe(
    Flag.withDescription("rpcs:// only: this client's TLS certificate, a PEM file (else RPC_TLS_CERT)"),
    Flag.optional
  ),
  ca: Flag.String("ca").pipe(
    Flag.withDescription("rpcs:// only: the CA the service's certificate must chain to, a PEM file (else RPC_TLS_CA)"),
    Flag.optional
  ),
  json: Flag.Boolean("json").pipe(Flag.withDescription("print JSON, for scripts"), Flag.withDefault(false))
}

interface ParsedFlags {
  readonly timeout: string
  readonly key: Option.Option<string>
  readonly cert: Option.Option<string>
  readonly ca: Option.Option<string>
  readonly json: boolean
}

const flagsOf = (parsed: ParsedFlags) =>
  Effect.gen(function*() {
    const timeout = parseDuration(parsed.timeout)
    if (timeout === undefined || !Duration.isFinite(timeout) || Duration.toMillis(timeout) <= 0) {
      return yield* usage(`--timeout ${parsed.timeout} is not a duration; give 5s, 500ms or 2m`)
    }
    const flags: Remote.ConnectionFlags = {
      timeout,
      key: Option.getOrUndefined(parsed.key),
      cert: Option.getOrUndefined(parsed.cert),
      ca: Option.getOrUndefined(parsed.ca)
    }
    return flags
  })

/** Runs a remote command in a scope of its own (its service shuts down at the end) and reports its failure. */
const remote = <A>(
  parsed: ParsedFlags,
  body: (flags: Remote.ConnectionFlags) => Effect.Effect<A, Remote.RemoteFailure, Scope.Scope>
) =>
  Effect.flatMap(flagsOf(parsed), (flags) =>
    Effect.scoped(body(flags)).pipe(Effect.catchTag("RemoteFailure", reported(parsed.json))))

const addressArgument = (description: string) => Argument.String("address").pipe(Argument.withDescription(description))

const millis = (n: number) => `${n.toFixed(2)} ms`

// ---------------------------------------------------------------------------------------------------------------
// ping
// ---------------------------------------------------------------------------------------------------------------

/** `ping <address> [--count n]`. */
export const ping = Command.make(
  "ping",
  {
    address: addressArgument("rpc://host:port, or rpc://host:port/endpointId to check that the endpoint runs"),
    count: Flag.Int("count").pipe(
      Flag.withDescription("how many handshakes to time after the first connect (default 3)"),
      Flag.withDefault(3)
    ),
    ...connectionFlags
  },
  Effect.fnUntraced(function*(input) {
    if (input.count < 0 || input.count > 1000) return yield* usage(`--count ${input.count} must be between 0 and 1000`)
    const result = yield* remote(input, (flags) => Remote.ping(input.address, input.count, flags))
    if (input.json) yield* Console.log(JSON.stringify(result, null, 2))
    else {
      const rounds = result.roundTripMillis
      const lines = [
        `${result.address}: RpcService ${result.service ?? "?"}, incarnation ${result.incarnation ?? "?"}, ` +
        `protocol version ${result.protocolVersion}`,
        `connected in ${millis(result.connectMillis)} (dial, hellos and a handshake)`,
        ...rounds.map((ms, i) => `handshake ${i + 1}: ${millis(ms)}`)
      ]
      if (rounds.length > 0) {
        const sum = rounds.reduce((a, b) => a + b, 0)
        lines.push(
          `round trip min/avg/max ${millis(Math.min(...rounds))} / ${millis(sum / rounds.length)} / ` +
            millis(Math.max(...rounds))
        )
      }
      if (result.endpoint !== undefined) {
        lines.push(`endpoint "${result.endpoint.endpointId}": ${result.endpoint.present ? "runs" : "not found"}`)
      }
      yield* Console.log(lines.join("\n"))
    }
    if (result.endpoint !== undefined && !result.endpoint.present) {
      return yield* new CliFailure({ exitCode: ExitCode.NotFound, detail: `no endpoint ${result.endpoint.endpointId}` })
    }
  })
).pipe(
  Command.withDescription("Connect, exchange hellos, and time handshakes: is the service (and the endpoint) up?"),
  Command.withExamples([
    { command: "effect-actor-rpc ping rpc://127.0.0.1:6123", description: "is the service up?" },
    { command: "effect-actor-rpc ping rpc://127.0.0.1:6123/jobmaster --count 10", description: "and the endpoint?" }
  ])
)

// ---------------------------------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------------------------------

const formatList = (info: RpcReflection.ServiceInfo): string => {
  const lines = [
    `RpcService ${info.service}${info.authority === null ? "" : ` at ${info.authority}`}: ` +
    `${info.endpoints.length} endpoint${info.endpoints.length === 1 ? "" : "s"}`
  ]
  for (const endpoint of info.endpoints) {
    lines.push(`${endpoint.address}  ${endpoint.state}${endpoint.fenced ? ", fenced" : ""}`)
    for (const gateway of endpoint.gateways) {
      const methods = gateway.methods.map((m) => `${m.name} (${m.kind})`).join(", ")
      lines.push(`  ${gateway.name}  ${gateway.fingerprint}${gateway.fenced ? "  token declared" : ""}`)
      lines.push(`    ${methods === "" ? "no methods" : methods}`)
    }
  }
  return lines.join("\n")
}

/** `list <address>`. */
export const list = Command.make(
  "list",
  {
    address: addressArgument("the service: rpc://host:port (any of its endpoint addresses works too)"),
    ...connectionFlags
  },
  Effect.fnUntraced(function*(input) {
    const info = yield* remote(input, (flags) => Remote.list(input.address, flags))
    yield* Console.log(input.json ? JSON.stringify(info, null, 2) : formatList(info))
  })
).pipe(
  Command.withDescription("List a service's endpoints and the gateways each serves (needs RpcConfig.reflection there)"),
  Command.withExamples([{ command: "effect-actor-rpc list rpc://127.0.0.1:6123", description: "what runs there?" }])
)

// ---------------------------------------------------------------------------------------------------------------
// describe
// ---------------------------------------------------------------------------------------------------------------

const formatTimeout = (timeout: RpcCompatibility.MethodSnapshot["timeoutMillis"]): string =>
  timeout === undefined ? "" : timeout === "infinity" ? ", no timeout" : `, timeout ${timeout} ms`

const formatSchema = (label: string, schema: RpcCompatibility.SchemaSnapshot): Array<string> => {
  const wire = Remote.wireForm(schema)
  return [
    `    ${label}: ${schema.description}`,
    ...(wire === undefined ? [] : [`      on the wire (as call takes it in JSON): ${wire}`])
  ]
}

const formatDescribe = (address: string, snapshots: ReadonlyArray<RpcCompatibility.GatewaySnapshot>): string => {
  const lines = [address]
  for (const snapshot of snapshots) {
    lines.push(
      `gateway ${snapshot.gateway} (fingerprint ${snapshot.fingerprint})` +
        (snapshot.token === undefined ? "" : `, fencing token ${snapshot.token.description}`)
    )
    for (const [name, method] of Object.entries(snapshot.methods)) {
      lines.push(`  ${name}: ${method.kind}${formatTimeout(method.timeoutMillis)}`)
      lines.push(...formatSchema("payload", method.payload))
      if (method.kind === "ask") {
        lines.push(...formatSchema("success", method.success), ...formatSchema("failure", method.failure))
      }
    }
  }
  return lines.join("\n")
}

/** `describe <address> [--gateway name] [--json]`. */
export const describe = Command.make(
  "describe",
  {
    address: addressArgument("the endpoint: rpc://host:port/endpointId"),
    gateway: Flag.String("gateway").pipe(
      Flag.withDescription("only this gateway (needed with --json when the endpoint serves several)"),
      Flag.optional
    ),
    ...connectionFlags
  },
  Effect.fnUntraced(function*(input) {
    const gateway = Option.getOrUndefined(input.gateway)
    const snapshots = yield* remote(input, (flags) => Remote.describe(input.address, gateway, flags))
    if (!input.json) return yield* Console.log(formatDescribe(input.address, snapshots))
    if (snapshots.length !== 1) {
      return yield* usage(
        `The endpoint serves ${snapshots.map((s) => s.gateway).join(", ")}: choose one with --gateway, ` +
          `since --json writes one snapshot (the file check reads)`
      )
    }
    yield* Console.log(RpcCompatibility.encodeSnapshot(snapshots[0]!).trimEnd())
  })
).pipe(
  Command.withDescription("Show an endpoint's methods with their payload, success and failure types"),
  Command.withExamples([
    { command: "effect-actor-rpc describe rpc://127.0.0.1:6123/jobmaster", description: "read the methods" },
    {
      command: "effect-actor-rpc describe rpc://127.0.0.1:6123/jobmaster --json > v1.json",
      description: "keep the snapshot, for check in CI"
    }
  ])
)

// ---------------------------------------------------------------------------------------------------------------
// call
// ---------------------------------------------------------------------------------------------------------------

/** `call <address> <method> [json] [--gateway name] [--token json] [--timeout d] [--json]`. */
export const call = Command.make(
  "call",
  {
    address: addressArgument("the endpoint: rpc://host:port/endpointId"),
    method: Argument.String("method").pipe(
      Argument.withDescription("the method: name, or Gateway.name when several gateways have it")
    ),
    payload: Argument.String("json").pipe(
      Argument.withDescription("the payload as JSON, in its wire form (describe shows it); none for a void payload"),
      Argument.optional
    ),
    gateway: Flag.String("gateway").pipe(Flag.withDescription("the gateway of the method"), Flag.optional),
    token: Flag.String("token").pipe(
      Flag.withDescription("the fencing token, as JSON, for a fenced endpoint"),
      Flag.optional
    ),
    ...connectionFlags
  },
  Effect.fnUntraced(function*(input) {
    const outcome = yield* remote(input, (flags) =>
      Remote.call(
        input.address,
        input.method,
        Option.getOrUndefined(input.payload),
        { gateway: Option.getOrUndefined(input.gateway), token: Option.getOrUndefined(input.token) },
        flags
      ))
    if (input.json) yield* Console.log(JSON.stringify(outcome, null, 2))
    else if (outcome.outcome === "success") yield* Console.log(JSON.stringify(outcome.value, null, 2) ?? "null")
    else if (outcome.outcome === "sent") yield* Console.log("sent (a tell has no reply)")
    else {
      yield* Console.log(JSON.stringify(outcome.failure, null, 2))
      yield* Console.error(`${input.method} failed with its declared failure`)
    }
    if (outcome.outcome === "failure") {
      return yield* new CliFailure({ exitCode: ExitCode.Failure, detail: `${input.method} failed` })
    }
  })
).pipe(
  Command.withDescription("Call a method with a JSON payload and print the reply, or the typed error, as JSON"),
  Command.withExamples([
    {
      command: `effect-actor-rpc call rpc://127.0.0.1:6123/kv put '{"key":"a","value":"1"}'`,
      description: "an ask"
    },
    {
      command: `effect-actor-rpc call rpc://127.0.0.1:6123/jobmaster requestSlot '{"n":2}' --token '{"term":3}'`,
      description: "a fenced endpoint"
    }
  ])
)

// ---------------------------------------------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------------------------------------------

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
  Command.withDescription(
    "The command-line client of effect-actor-rpc. Exit codes: 0 ok, 1 a negative answer (incompatible, or the " +
      "method's declared failure), 2 usage, 3 no connection, 4 not found (or reflection off), 5 a call error"
  ),
  Command.withSubcommands([ping, list, describe, call, check])
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
