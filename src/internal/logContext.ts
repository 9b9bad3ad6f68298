/**
 * The log annotations of an endpoint's main thread: its logs, and those of fibers its handlers fork, name the
 * endpoint and, for a call, the method. The main thread only ever runs its endpoint's messages, so its context is
 * switched in place, and only when the method changes: wrapping every handler in `Effect.setContext` cost 200 ns per
 * call. The contexts are made once per method and kept.
 */
import * as Context from "effect/Context"
import type * as Fiber from "effect/Fiber"
import * as References from "effect/References"

/** Switches `fiber` (the main thread, when there is one) to `context`, unless it has it already. */
export const annotateMainThread = (fiber: Fiber.Fiber<unknown, unknown> | undefined, context: Context.Context<never>) => {
  if (fiber !== undefined && fiber.context !== context) fiber.setContext(context)
}

/** One endpoint's annotated contexts, made from the context its code runs with. */
export class LogContexts {
  private byGateway: Map<string, Map<string, Context.Context<never>>> | undefined = undefined
  private endpoint: Context.Context<never> | undefined = undefined

  constructor(private readonly context: Context.Context<never>, private readonly endpointId: string) {}

  /** Annotated with the endpoint id: for lifecycle hooks and self-work. */
  forEndpoint(): Context.Context<never> {
    return this.endpoint ??= this.annotated({ endpoint: this.endpointId })
  }

  /** Annotated with the endpoint id and `gateway.method`: for a call. */
  forMethod(gateway: string, method: string): Context.Context<never> {
    const byGateway = this.byGateway ??= new Map()
    let byMethod = byGateway.get(gateway)
    if (byMethod === undefined) byGateway.set(gateway, byMethod = new Map())
    let context = byMethod.get(method)
    if (context === undefined) {
      context = this.annotated({ endpoint: this.endpointId, method: `${gateway}.${method}` })
      byMethod.set(method, context)
    }
    return context
  }

  private annotated(annotations: Record<string, string>): Context.Context<never> {
    const inherited = Context.get(this.context, References.CurrentLogAnnotations)
    return Context.add(this.context, References.CurrentLogAnnotations, { ...inherited, ...annotations })
  }
}
