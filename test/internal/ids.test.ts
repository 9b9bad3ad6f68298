/**
 * Endpoint ids: version-4 UUIDs in the canonical form, distinct across pool refills.
 */
import { assert, describe, it } from "@effect/vitest"
import { randomUuid } from "../../src/internal/ids.js"

describe("randomUuid", () => {
  it("gives canonical version-4 UUIDs, all distinct across several pool refills", () => {
    const seen = new Set<string>()
    for (let i = 0; i < 2000; i++) {
      const id = randomUuid()
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      seen.add(id)
    }
    assert.strictEqual(seen.size, 2000)
  })
})
