/**
 * Builds gateway clients over a transport-neutral port: the same client code serves local and remote calls,
 * applying timeouts, call-site capture and the stopped-service check in one place.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"
import type { RpcConfig } from "../RpcConfig.js"
import { RpcServiceStoppedError, RpcTimeoutError } from "../RpcError.js"
import type * as RpcGateway from "../RpcGateway.js"
import type { Deadlines, Entry } from "./deadlines.js"
import type { Resume } from "./endpoint.js"

/**
 * How a client reaches its endpoint: one ask and one tell primitive, without timeouts. `ask` hands the outcome to
 * `resume` exactly once, possibly before it returns, and returns how to drop interest in a reply still to come.
 */
export interface Port {
  readonly address: string
  readonly ask: (
    gateway: RpcGateway.Any,
    method: string,
    payload: unknown,
    token: unknown,
    resume: Resume
  ) => (() => void) | undefined
  /** Sends a tell at once; returns the error to fail with when it cannot be sent. */
  readonly tell: (
    gateway: RpcGateway.Any,
    method: string,
    payload: unknown,
    token: unknown
  ) => unknown
}

/** The service a client belongs to, as far as the client needs it. */
export interface Origin {
  readonly name: string
  readonly config: RpcConfig
  readonly isStopped: () => boolean
  /** Where the asks' timeouts are kept. */
  readonly deadlines: Deadlines
}

const sourceDir = fileURLToPath(new URL("..", import.meta.url))

/** The caller's frames from a captured stack: those outside this library and Effect's runtime. */
export const formatCallSite = (error: Error): string | undefined => {
  const stack = error.stack
  if (stack === undefined) return undefined
  const frames = stack.split("\n").slice(1).map((line) => line.trim()).filter((line) =>
    line.startsWith("at ") && !line.includes(sourceDir) && !line.includes("/node_modules/effect/") &&
    !line.includes("(<anonymous>)")
  )
  return frames.length === 0 ? undefined : frames.slice(0, 8).join("\n  ")
}

/**
 * Captures the stack at the call. Only a few frames are kept: the caller's code sits right above the client
 * method, and a full trace through the Effect runtime costs more than the call itself.
 */
const captureCallSite = (): Error => {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = CALL_SITE_FRAMES
  const error = new Error()
  Error.stackTraceLimit = limit
  return error
}

const CALL_SITE_FRAMES = 6

const timedOut = (address: string, method: string, timeoutMillis: number, callSite: Error | undefined) => {
  const site = callSite === undefined ? undefined : formatCallSite(callSite)
  return Effect.fail(
    new RpcTimeoutError({ address, method, timeoutMillis, ...(site === undefined ? {} : { callSite: site }) })
  )
}

/** Makes a client of `gateway` over `port`; `token` yields the fencing token each call carries. */
export const make = <G extends RpcGateway.Any>(
  gateway: G,
  port: Port,
  origin: Origin,
  token: () => unknown
): RpcGateway.Client<G> => {
  const client: Record<string, unknown> = { address: port.address, gateway }
  const stopped = (method: string) =>
    Effect.fail(new RpcServiceStoppedError({ service: origin.name, operation: `call ${gateway.name}.${method}` }))
  for (const [name, method] of Object.entries(gateway.methods as RpcGateway.Methods)) {
    const qualified = `${gateway.name}.${name}`
    if (method.kind === "tell") {
      client[name] = (payload: unknown) =>
        Effect.suspend(() => {
          if (origin.isStopped()) return stopped(name)
          const error = port.tell(gateway, name, payload, token())
          return error === undefined ? Effect.void : Effect.fail(error)
        })
      continue
    }
    const methodTimeout = method.timeout
    client[name] = (payload: unknown, options?: RpcGateway.CallOptions) => {
      const callSite = origin.config.captureAskCallSite ? captureCallSite() : undefined
      const timeout = options?.timeout !== undefined
        ? Duration.fromInputUnsafe(options.timeout)
        : methodTimeout ?? origin.config.askTimeout
      const timeoutMillis = Duration.toMillis(timeout)
      return Effect.callback<unknown, unknown>((resume) => {
        if (origin.isStopped()) {
          resume(stopped(name))
          return
        }
        // Whichever comes first, the reply or the deadline, settles the call; the other is then ignored.
        let settled = false
        let entry: Entry | undefined
        const cancel = port.ask(gateway, name, payload, token(), (exit) => {
          if (settled) return
          settled = true
          if (entry !== undefined) origin.deadlines.remove(entry)
          resume(exit)
        })
        if (settled) return
        if (Number.isFinite(timeoutMillis)) {
          entry = origin.deadlines.add(timeoutMillis, () => {
            if (settled) return
            settled = true
            cancel?.()
            resume(timedOut(port.address, qualified, timeoutMillis, callSite))
          })
        }
        return Effect.sync(() => {
          if (settled) return
          settled = true
          if (entry !== undefined) origin.deadlines.remove(entry)
          cancel?.()
        })
      })
    }
  }
  return client as RpcGateway.Client<G>
}
