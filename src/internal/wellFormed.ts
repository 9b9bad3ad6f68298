/**
 * Non-empty strings that are well-formed Unicode: a lone surrogate would not survive UTF-8 (the wire, etcd's values),
 * so a session id or an address holding one could not be matched after a round trip.
 */
import * as Schema from "effect/Schema"

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** A non-empty, well-formed (no lone surrogates) string. */
export const WellFormedString = Schema.NonEmptyString.check(
  Schema.makeFilter(
    (value: string) => !loneSurrogate.test(value) || "must be well-formed Unicode (no lone surrogates)",
    // What `describe` and the compatibility report show for this check.
    { expected: "well-formed Unicode" }
  )
)
