/**
 * How the outcome of handler code becomes a reply: a success or a typed failure goes to the caller as it is, a
 * defect as a `RemoteDefectError` (and an error log), an interruption as `RecipientUnreachableError`; with nobody to
 * reply to (a tell, runAsync), a failure is logged. A `later` reply runs on a fiber of its own, so the mailbox moves on.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import { RecipientUnreachableError, RemoteDefectError } from "../RpcError.js"
import { describe } from "./format.js"
import type { Resume } from "./invocation.js"

/** The endpoint a reply comes from, as its errors and logs name it. */
export interface Source {
  readonly address: string
  readonly endpointId: string
}

const unreachable = (address: string, method: string, reason: string) =>
  Exit.fail(new RecipientUnreachableError({ address, method, reason }))

/** Replies to `resume` (when someone waits) with the outcome `exit` of `method`'s code; the logging it needs. */
export const reply = (
  source: Source,
  method: string,
  exit: Exit.Exit<unknown, unknown>,
  resume: Resume | undefined
): Effect.Effect<void> => {
  if (Exit.isSuccess(exit) || Cause.hasFails(exit.cause)) {
    if (resume !== undefined) resume(Exit.isSuccess(exit) ? exit : Exit.fail(Cause.squash(exit.cause)))
    else if (Exit.isFailure(exit)) return logDropped(source, method, exit.cause)
    return Effect.void
  }
  if (Cause.hasDies(exit.cause)) {
    const defect = describe(Cause.squash(exit.cause))
    if (resume !== undefined) resume(Exit.fail(new RemoteDefectError({ address: source.address, method, defect })))
    return Effect.logError(`Handler of ${method} died`, exit.cause).pipe(
      Effect.annotateLogs({ endpoint: source.endpointId, address: source.address })
    )
  }
  if (resume !== undefined) resume(unreachable(source.address, method, "the call was interrupted"))
  return Effect.void
}

/** Logs a failure nobody waits for (a tell's, runAsync's). */
export const logDropped = (source: Source, method: string, cause: Cause.Cause<unknown>): Effect.Effect<void> =>
  Effect.logWarning(`${method} failed and nobody is waiting for the result`, cause).pipe(
    Effect.annotateLogs({ endpoint: source.endpointId, address: source.address })
  )

/** Runs a `later` reply on a fiber of its own in `scope` (the endpoint's), so the mailbox moves on. */
export const forkLater = (
  source: Source,
  method: string,
  effect: Effect.Effect<unknown, unknown>,
  resume: Resume | undefined,
  scope: Scope.Scope
): Effect.Effect<void> =>
  Effect.asVoid(
    Effect.forkIn(
      Effect.flatMap(Effect.exit(effect), (exit) => reply(source, method, exit, resume)).pipe(
        Effect.onInterrupt(() =>
          Effect.sync(() => resume?.(unreachable(source.address, method, "the endpoint terminated before replying")))
        )
      ),
      scope
    )
  )
