/**
 * Port specifications ("0", "6123", "50100-50200", "50100-50200,50300") and binding within them: ports are tried
 * in order and the next one only when the current one is taken, as Flink's `BootstrapTools` does.
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"

/** The ports of a specification, in the order they are tried; `[0]` means any free port. */
export const parse = (spec: string): Result.Result<ReadonlyArray<number>, string> => {
  const ports: Array<number> = []
  const parts = spec.split(",").map((part) => part.trim())
  for (const part of parts) {
    const match = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(part)
    if (match === null) {
      return Result.fail(`"${part}" in port range "${spec}" is neither a port nor a range like 50100-50200`)
    }
    const first = Number(match[1])
    const last = match[2] === undefined ? first : Number(match[2])
    if (first > 65535 || last > 65535) return Result.fail(`port range "${spec}" goes beyond 65535`)
    if (last < first) return Result.fail(`"${part}" in port range "${spec}" ends before it starts`)
    if (first === 0 && (last !== 0 || parts.length > 1)) {
      return Result.fail(`port 0 (any free port) in "${spec}" cannot be combined with other ports`)
    }
    for (let port = first; port <= last; port++) ports.push(port)
  }
  return Result.succeed(ports)
}

/** Why one port could not be used. */
export type Attempt<E> = { readonly _tag: "Taken" } | { readonly _tag: "Failed"; readonly error: E }

/**
 * Binds to the first port of `ports` that `bind` succeeds on, moving on only while ports are taken; fails with
 * the first other error, or with `exhausted` once every port was taken.
 */
export const bindFirst = <A, E, E2, R>(
  ports: ReadonlyArray<number>,
  bind: (port: number) => Effect.Effect<A, Attempt<E>, R>,
  exhausted: () => E2
): Effect.Effect<A, E | E2, R> => {
  const attempt = (index: number): Effect.Effect<A, E | E2, R> =>
    index >= ports.length
      ? Effect.fail(exhausted())
      : Effect.catch(bind(ports[index]!), (failure) =>
        failure._tag === "Taken" ? attempt(index + 1) : Effect.fail(failure.error))
  return attempt(0)
}
