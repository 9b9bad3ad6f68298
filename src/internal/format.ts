/**
 * How values and defects are printed in error messages and logs. A hostile peer chooses some of these values, so
 * nothing here may throw or recurse without bound.
 */

/** Renders an unknown defect for an error message: its message when it is an Error, else its string form. */
export const describe = (defect: unknown): string => {
  if (typeof defect === "string") return defect
  if (defect instanceof Error) {
    // Tagged errors often carry their content in fields rather than in a message.
    const fields = Object.keys(defect).length > 0 ? ` ${json(defect)}` : ""
    return defect.message === "" ? `${defect.name}${fields}` : `${defect.name}: ${defect.message}`
  }
  return json(defect)
}

const json = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    // A cycle, a bigint, or (from a hostile peer) nesting deep enough to overflow the stack here too.
    try {
      return String(value)
    } catch {
      return "(a value that cannot be printed)"
    }
  }
}
