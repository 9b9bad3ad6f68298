/**
 * Process plumbing for the multi-process examples (`examples/remote.ts`, `examples/demo.ts`); not an example
 * itself.
 *
 * Launcher side: `spawnRole` starts a role as a child process (`node --import tsx <file>`), relays its output
 * line by line behind a timestamp and a `[role]` prefix, reads the addresses it announces on its `READY` line,
 * and kills it by pid if it is still running when the launcher's scope closes. `runLauncher` reports a failure
 * as one readable line and exits non-zero; `withWatchdog` bounds the whole run.
 *
 * Role side: `announce` prints the `READY` line; `runRole` runs the role's program, treats the launcher's
 * SIGTERM as a normal stop (exit code 0) and stops the role if its launcher dies.
 */
// The module rather than the package index: it loads in half the time, and every role process pays for it.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Deferred, Duration, Effect, Exit, Runtime, Schema, type Scope } from "effect"
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))
const sourceCondition = "--conditions=effect-actor-rpc-source"
const startedAt = Date.now()

/** Every line gets the prefix, so that continuation lines still say where they come from. */
const format = (component: string, message: string) => {
  const prefix = `${String(Date.now() - startedAt).padStart(5)} ms  ${`[${component}]`.padEnd(17)} `
  return message.split("\n").map((line) => prefix + line).join("\n")
}

/** A log line of this process: milliseconds since it started, `[component]`, the message. */
export const logger = (component: string) => (message: string) => Console.log(format(component, message))

/** A role failed to start, failed, or did not stop in time; or the watchdog fired. */
export class LaunchError extends Schema.TaggedError<LaunchError>()("LaunchError", { detail: Schema.String }) {
  override get message(): string {
    return this.detail
  }
}

/** A running role process. */
export interface Role {
  readonly name: string
  readonly pid: number
  /** The addresses on the role's `READY` line; fails if the role exits before printing it. */
  readonly ready: Effect.Effect<ReadonlyArray<string>, LaunchError>
  /** Waits for the role to exit on its own (at most `within`); fails unless it exits with code 0. */
  readonly succeeded: (within: Duration.Input) => Effect.Effect<void, LaunchError>
  /** Sends SIGTERM and waits (at most 5 s) for the role to shut down cleanly with exit code 0. */
  readonly stop: Effect.Effect<void, LaunchError>
  /** Sends SIGKILL and waits for the process to be gone: no onStop, no goodbye to its peers. */
  readonly kill: Effect.Effect<void, LaunchError>
  /** Has the process not exited yet? */
  readonly isRunning: Effect.Effect<boolean>
}

interface Ended {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

const describeEnd = ({ code, signal }: Ended) => code === null ? `was killed by ${signal}` : `exited with code ${code}`
const formatDuration = (duration: Duration.Input) => Duration.format(Duration.fromInputUnsafe(duration))

/**
 * Starts `file` (relative to the repository) as a role process; the process is killed with SIGKILL, by its pid,
 * if it is still running when the scope closes.
 */
export const spawnRole = (
  name: string,
  file: string,
  args: ReadonlyArray<string> = []
): Effect.Effect<Role, LaunchError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      // process.execPath is the Node that runs this launcher (the project's Node 22 under npm / npx); the condition
      // resolves the package's own name to src/ (package.json "exports") instead of the build in dist/.
      const child = spawn(process.execPath, [sourceCondition, "--import", "tsx", file, ...args], {
        cwd: root,
        // The IPC channel lets the role notice when its launcher is gone, however it went.
        stdio: ["ignore", "pipe", "pipe", "ipc"]
      })
      const pid = child.pid
      if (pid === undefined) return Effect.fail(new LaunchError({ detail: `could not start ${name} (${file})` }))
      const ready = Deferred.makeUnsafe<ReadonlyArray<string>, LaunchError>()
      const ended = Deferred.makeUnsafe<Ended>()
      const relay = (stream: NodeJS.ReadableStream) =>
        createInterface({ input: stream }).on("line", (line) => {
          console.log(format(name, line))
          const announced = /^READY (.+)$/.exec(line)
          if (announced !== null) Deferred.doneUnsafe(ready, Effect.succeed(announced[1]!.split(" ")))
        })
      relay(child.stdout!)
      relay(child.stderr!)
      child.on("error", (error) =>
        Deferred.doneUnsafe(ready, Effect.fail(new LaunchError({ detail: `${name}: ${error.message}` }))))
      // "close" comes after the output streams have ended, so every line has been relayed by then.
      child.on("close", (code, signal) => {
        const end = { code, signal }
        const early = new LaunchError({ detail: `${name} ${describeEnd(end)} before it was ready` })
        Deferred.doneUnsafe(ready, Effect.fail(early))
        Deferred.doneUnsafe(ended, Effect.succeed(end))
      })
      const running = () => child.exitCode === null && child.signalCode === null
      const signal = (sig: NodeJS.Signals) => Effect.sync(() => running() && process.kill(pid, sig))
      const awaitEnd = (within: Duration.Input, what: string) =>
        Deferred.await(ended).pipe(
          Effect.timeoutOrElse({
            duration: within,
            orElse: () =>
              Effect.fail(new LaunchError({ detail: `${name} (pid ${pid}) ${what} within ${formatDuration(within)}` }))
          })
        )
      const exitedCleanly = (end: Ended) =>
        end.code === 0 ? Effect.void : Effect.fail(new LaunchError({ detail: `${name} ${describeEnd(end)}` }))
      const role: Role = {
        name,
        pid,
        ready: Deferred.await(ready),
        succeeded: (within) => Effect.flatMap(awaitEnd(within, "did not finish"), exitedCleanly),
        stop: Effect.andThen(signal("SIGTERM"), awaitEnd("5 seconds", "did not stop after SIGTERM")).pipe(
          Effect.flatMap(exitedCleanly)
        ),
        kill: Effect.andThen(signal("SIGKILL"), Effect.asVoid(awaitEnd("5 seconds", "was not gone after SIGKILL"))),
        isRunning: Effect.sync(running)
      }
      return Effect.succeed(role)
    }),
    (role) =>
      Effect.flatMap(role.isRunning, (running) =>
        running
          ? Effect.andThen(logger("launcher")(`killing ${role.name} (pid ${role.pid})`), Effect.ignore(role.kill))
          : Effect.void)
  )

/** Fails the run with a `LaunchError` if it takes longer than `duration`; its roles are then killed by pid. */
export const withWatchdog = (duration: Duration.Input) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.timeoutOrElse(self, {
    duration,
    orElse: () =>
      Effect.fail(
        new LaunchError({ detail: `watchdog: the run did not finish within ${formatDuration(duration)}` })
      )
  })

/** Runs a launcher: a failure is printed as one `[launcher] FAILED: ...` line and the exit code is 1. */
export const runLauncher = <A, E>(program: Effect.Effect<A, E>): void =>
  program.pipe(
    Effect.tapCause((cause) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.void
        : Console.error(format("launcher", `FAILED: ${Cause.pretty(cause).split("\n")[0]}`))
    ),
    NodeRuntime.runMain({ disableErrorReporting: true })
  )

/** Prints the line the launcher waits for: `READY` and the role's addresses. */
export const announce = (...addresses: ReadonlyArray<string>): Effect.Effect<void> =>
  Console.log(`READY ${addresses.join(" ")}`)

/**
 * Runs a role's program. SIGTERM interrupts it, which closes its scope and Layers (endpoints run onStop, then the
 * RpcService shuts down); that is how the launcher stops a role, so it counts as success (exit code 0).
 */
export const runRole = <A, E>(program: Effect.Effect<A, E>): void => {
  if (process.channel !== undefined) {
    // A launcher that dies without stopping us (say, SIGKILL) closes the channel: stop rather than linger.
    process.on("disconnect", () => process.kill(process.pid, "SIGTERM"))
    process.channel.unref()
  }
  NodeRuntime.runMain(program, {
    teardown: (exit, onExit) =>
      Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
        ? onExit(0)
        : Runtime.defaultTeardown(exit, onExit)
  })
}
