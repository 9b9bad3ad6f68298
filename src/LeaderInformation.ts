/**
 * What a confirmed leader publishes for retrieval: the address its endpoint serves at and the token of its
 * leadership session. Followers connect to `address` with `token` as their fencing token.
 *
 * @since 0.1.0
 */
import * as Equivalence_ from "effect/Equivalence"
import { hasProperty } from "effect/Predicate"
import * as Schema from "effect/Schema"
import { WellFormedString } from "./internal/wellFormed.js"
import * as LeaderToken from "./LeaderToken.js"

const TypeId = "~effect-actor-rpc/LeaderInformation"

/**
 * A confirmed leader: its endpoint's address and its session's token.
 *
 * @since 0.1.0
 */
export class LeaderInformation extends Schema.Class<LeaderInformation>("effect-actor-rpc/LeaderInformation")({
  address: WellFormedString,
  token: LeaderToken.LeaderToken
}) {
  /** On the prototype, so that instances built by a decoder carry it too. @since 0.1.0 */
  get [TypeId](): typeof TypeId {
    return TypeId
  }

  override toString(): string {
    return `${this.address} with ${this.token}`
  }
}

/**
 * Is `u` a `LeaderInformation`?
 *
 * @since 0.1.0
 */
export const isLeaderInformation = (u: unknown): u is LeaderInformation => hasProperty(u, TypeId)

/**
 * Makes a `LeaderInformation`.
 *
 * @since 0.1.0
 */
export const make = (address: string, token: LeaderToken.LeaderToken): LeaderInformation =>
  new LeaderInformation({ address, token })

/**
 * Equal address and equivalent token.
 *
 * @since 0.1.0
 */
export const Equivalence: Equivalence_.Equivalence<LeaderInformation> = Equivalence_.make((self, that) =>
  self.address === that.address && LeaderToken.Equivalence(self.token, that.token)
)
