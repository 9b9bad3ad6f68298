/**
 * The token of a leadership session: `{ term, session }`. The term strictly increases with each new leadership of a
 * component (etcd: the create revision of the leader's key; embedded: a counter per component), so tokens are
 * ordered and a follower can tell a newer leader from an older one; the session is a fresh unique string per
 * leadership session, so two sessions never share a token even where an engine could repeat a term.
 *
 * `LeaderToken` is a Schema, so it can be a fenced endpoint's token Schema (`RpcEndpoint.makeFenced({ token:
 * LeaderToken.LeaderToken, ... })`) and crosses the wire like any other value.
 *
 * @since 0.1.0
 */
import * as Equivalence_ from "effect/Equivalence"
import * as Order_ from "effect/Order"
import { hasProperty } from "effect/Predicate"
import * as Schema from "effect/Schema"
import { WellFormedString } from "./internal/wellFormed.js"

const TypeId = "~effect-actor-rpc/LeaderToken"

/**
 * A leadership session's token. `term` is a positive safe integer, `session` a non-empty, well-formed string.
 *
 * @since 0.1.0
 */
export class LeaderToken extends Schema.Class<LeaderToken>("effect-actor-rpc/LeaderToken")({
  term: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
  session: WellFormedString
}) {
  /** On the prototype, so that instances built by a decoder carry it too. @since 0.1.0 */
  get [TypeId](): typeof TypeId {
    return TypeId
  }

  /** `term 12 (session 3f0c…)`: the whole session id, so logs can be matched against the engine's data. */
  override toString(): string {
    return `term ${this.term} (session ${this.session})`
  }
}

/**
 * Is `u` a `LeaderToken`?
 *
 * @since 0.1.0
 */
export const isLeaderToken = (u: unknown): u is LeaderToken => hasProperty(u, TypeId)

/**
 * Makes a token (throws on a term that is not a positive safe integer or an empty session).
 *
 * @since 0.1.0
 */
export const make = (term: number, session: string): LeaderToken => new LeaderToken({ term, session })

/**
 * Orders tokens by term (then by session, so that the order agrees with `Equivalence`): a newer leadership is greater.
 *
 * @since 0.1.0
 */
export const Order: Order_.Order<LeaderToken> = Order_.combine(
  Order_.mapInput(Order_.Number, (token: LeaderToken) => token.term),
  Order_.mapInput(Order_.String, (token: LeaderToken) => token.session)
)

/**
 * Two tokens are equivalent when both term and session are equal.
 *
 * @since 0.1.0
 */
export const Equivalence: Equivalence_.Equivalence<LeaderToken> = Equivalence_.make((self, that) =>
  self.term === that.term && self.session === that.session
)

/**
 * Is `self` from a newer leadership than `that` (a strictly greater term)?
 *
 * @since 0.1.0
 */
export const isNewerThan = (self: LeaderToken, that: LeaderToken): boolean => self.term > that.term
