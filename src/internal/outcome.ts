/**
 * An outcome that is rarely waited for, kept in one field of its owner: nothing yet, the Deferred of those already
 * waiting, or the Exit once it is known. An endpoint's startup and termination are such outcomes: most endpoints are
 * never awaited, and two eager Deferreds were 80 of an idle endpoint's 720 bytes (docs/PERFORMANCE.md).
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"

/** Nothing yet, the Deferred of those waiting, or the Exit once known. */
export type Outcome<E> = Exit.Exit<void, E> | Deferred.Deferred<void, E> | undefined

/** Waits for the outcome; a Deferred is made (and handed to `keep`) only if it is not known and none exists. */
export const wait = <E>(outcome: Outcome<E>, keep: (deferred: Deferred.Deferred<void, E>) => void): Effect.Effect<void, E> => {
  if (outcome === undefined) {
    const deferred = Deferred.makeUnsafe<void, E>()
    keep(deferred)
    return Deferred.await(deferred)
  }
  return Exit.isExit(outcome) ? outcome : Deferred.await(outcome)
}

/**
 * Makes the outcome known, unless it was already (the first one stands): `keep` stores the Exit before those waiting
 * are released, since a waiter may resume at once and look.
 */
export const settle = <E>(
  outcome: Outcome<E>,
  exit: Exit.Exit<void, E>,
  keep: (exit: Exit.Exit<void, E>) => void
): void => {
  if (outcome !== undefined && Exit.isExit(outcome)) return
  keep(exit)
  if (outcome !== undefined) Deferred.doneUnsafe(outcome, exit)
}

/** Is the outcome known? */
export const isKnown = <E>(outcome: Outcome<E>): boolean => outcome !== undefined && Exit.isExit(outcome)
