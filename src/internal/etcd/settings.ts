/**
 * The etcd driver's settings: its options resolved and checked, and the encoding of what it writes (the leader key's
 * JSON, key ranges). It loads no third-party package, so that `effect-actor-rpc/etcd` loads (and can say what to
 * install) without etcd3. See ../../etcd.ts for the recipe.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { EtcdOptions } from "../../etcd.js"
import { LeaderElectionError } from "../../HaError.js"
import { LeaderInformation } from "../../LeaderInformation.js"

/** The defaults of `EtcdOptions` (re-exported by etcd.ts as `defaults`). */
export const defaults = {
  ttl: Duration.seconds(5),
  margin: Duration.seconds(1),
  prefix: "effect-actor-rpc/"
} as const

export interface Settings {
  readonly engine: string
  readonly ttlSeconds: number
  readonly marginMillis: number
  readonly keepAliveMillis: number
  readonly requestMillis: number
  readonly prefix: string
}

/** Decodes the value of a leader key (JSON of `LeaderInformation`); anything else reads as no leader. */
const LeaderInformationJson = Schema.fromJsonString(LeaderInformation)
export const decodeLeader = Schema.decodeUnknownOption(LeaderInformationJson)
export const encodeLeader = Schema.encodeSync(LeaderInformationJson)

/** The end of a key range that covers every key starting with `prefix`. */
export const prefixEnd = (prefix: Buffer): Buffer => {
  const end = Buffer.from(prefix)
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1
      return end.subarray(0, i + 1)
    }
  }
  return Buffer.from([0])
}

export const toBuffer = (value: string | Uint8Array): Buffer =>
  typeof value === "string" ? Buffer.from(value) : Buffer.from(value.buffer, value.byteOffset, value.byteLength)

export const resolve = (options: EtcdOptions): Effect.Effect<Settings, LeaderElectionError> =>
  Effect.gen(function*() {
    const engine = `etcd ${options.endpoints.join(",")}`
    const invalid = (detail: string) =>
      new LeaderElectionError({ component: "", engine, reason: "InvalidConfiguration", detail })
    if (options.endpoints.length === 0) return yield* Effect.fail(invalid("no endpoints are configured"))
    const ttl = Duration.fromInputUnsafe(options.ttl ?? defaults.ttl)
    const margin = Duration.fromInputUnsafe(options.margin ?? defaults.margin)
    const ttlMillis = Duration.toMillis(ttl)
    if (!(ttlMillis >= 1000) || !Number.isFinite(ttlMillis)) {
      return yield* Effect.fail(invalid(`the TTL must be at least 1 second (got ${Duration.format(ttl)})`))
    }
    const ttlSeconds = Math.ceil(ttlMillis / 1000)
    const keepAliveMillis = Duration.toMillis(Duration.fromInputUnsafe(options.keepAliveInterval ?? ttlMillis / 5))
    const requestMillis = Duration.toMillis(Duration.fromInputUnsafe(options.requestTimeout ?? ttlMillis / 2))
    const marginMillis = Duration.toMillis(margin)
    if (!(marginMillis >= 0) || marginMillis + keepAliveMillis >= ttlSeconds * 1000) {
      return yield* Effect.fail(
        invalid(
          `the margin (${Duration.format(margin)}) plus the keepalive interval (${keepAliveMillis} ms) must stay ` +
            `below the TTL (${ttlSeconds} s)`
        )
      )
    }
    if (!(keepAliveMillis > 0) || !(requestMillis > 0)) {
      return yield* Effect.fail(invalid("the keepalive interval and the request timeout must be positive"))
    }
    return {
      engine,
      ttlSeconds,
      marginMillis,
      keepAliveMillis,
      requestMillis,
      prefix: options.prefix ?? defaults.prefix
    }
  })
