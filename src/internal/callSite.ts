/**
 * The call site an `RpcTimeoutError` names: captured when a client method is called, formatted only if the ask
 * times out.
 *
 * The capture happens when the caller builds the Effect (`client.method(x)`, also under `yield*`), so the frame
 * right above the client method is the caller's own code. `Error.captureStackTrace(site, method)` omits the
 * client method and every frame above it, so no frame of this library is ever captured, without telling this
 * library's files apart by path: that works the same from the sources, from `dist/`, and from a bundle where this
 * library, Effect and the caller are one file (and where a CommonJS bundle has no `import.meta.url` to find our
 * directory with).
 */

/** A stack captured at a call; V8 formats it only when `stack` is read. */
export interface CallSite {
  readonly stack?: string
}

/**
 * Frames kept at capture. The caller's frame comes first; the rest is the caller's own callers until Effect's
 * runtime, which resumed it, and a full trace through that runtime costs more than the ask itself.
 */
const FRAMES = 6

/** Frames printed at most. */
const PRINTED = 4

/** Captures the stack of a call to `method`, which must be the function the caller called (not a wrapper). */
export const capture = (method: Function): CallSite => {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = FRAMES
  const site: { stack?: string } = {}
  Error.captureStackTrace(site, method)
  Error.stackTraceLimit = limit
  return site
}

/**
 * The caller's frames, for the error message: from the caller's frame down to the first frame of Effect's runtime,
 * which called the caller (everything below it is the runtime's loop), without Node's own frames. The runtime is
 * recognised by its path (`node_modules/effect/`) where it has one, and, in a bundle where it does not, by what
 * survives bundling: V8's `Generator.next` resuming an `Effect.gen` body, and Effect's `~effect/` method names.
 */
export const format = (site: CallSite): string | undefined => {
  const stack = site.stack
  if (stack === undefined) return undefined
  const frames: Array<string> = []
  for (const raw of stack.split("\n")) {
    const line = raw.trim()
    if (!line.startsWith("at ")) continue
    if (isRuntime(line)) break
    if (isNode(line)) continue
    frames.push(line)
    if (frames.length === PRINTED) break
  }
  return frames.length === 0 ? undefined : frames.join("\n  ")
}

const isRuntime = (line: string): boolean =>
  line.startsWith("at Generator.next (") || line.includes("~effect/") || line.includes("/node_modules/effect/") ||
  line.includes("\\node_modules\\effect\\")

const isNode = (line: string): boolean => line.includes("(node:") || line.startsWith("at node:")
