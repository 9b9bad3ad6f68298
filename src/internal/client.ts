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

/** How a client reaches its endpoint: one ask and one tell primitive, without timeouts. */
export interface Port {
  readonly address: string
  readonly ask: (
    gateway: RpcGateway.Any,
    method: string,
    payload: unknown,
    token: unknown
  ) => Effect.Effect<unknown, unknown>
  readonly tell: (
    gateway: RpcGateway.Any,
    method: string,
    payload: unknown,
    token: unknown
  ) => Effect.Effect<void, unknown>
}

/** The service a client belongs to, as far as the client needs it. */
export interface Origin {
  readonly name: string
  readonly config: RpcConfig
  readonly isStopped: () => boolean
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
        Effect.suspend(() => origin.isStopped() ? stopped(name) : port.tell(gateway, name, payload, token()))
      continue
    }
    const methodTimeout = method.timeout
    client[name] = (payload: unknown, options?: RpcGateway.CallOptions) => {
      const callSite = origin.config.captureAskCallSite ? captureCallSite() : undefined
      const timeout = options?.timeout !== undefined
        ? Duration.fromInputUnsafe(options.timeout)
        : methodTimeout ?? origin.config.askTimeout
      return Effect.suspend(() => {
        if (origin.isStopped()) return stopped(name)
        return port.ask(gateway, name, payload, token()).pipe(
          Effect.timeoutOrElse({
            duration: timeout,
            orElse: () => {
              const site = callSite === undefined ? undefined : formatCallSite(callSite)
              return Effect.fail(
                new RpcTimeoutError({
                  address: port.address,
                  method: qualified,
                  timeoutMillis: Duration.toMillis(timeout),
                  ...(site === undefined ? {} : { callSite: site })
                })
              )
            }
          })
        )
      })
    }
  }
  return client as RpcGateway.Client<G>
}
