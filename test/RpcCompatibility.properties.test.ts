/**
 * The checker is sound on random evolutions: a random Schema (structs, tagged unions, literals, arrays, NullOr,
 * Option over string/number/integer/boolean leaves) goes through random changes (fields added optional or required,
 * removed, reordered, made optional or required; members and literals added or removed; leaves changed; shapes
 * wrapped or unwrapped). Whenever the checker finds no error in a direction, every random value the writer encodes
 * decodes with the reader through SchemaBinary, and decodes to what the reader should see: the writer's value
 * restricted to the reader's fields, less what a warning said would be dropped.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Result, Schema } from "effect"
import * as Arbitrary from "effect/Arbitrary"
import { issuesFor, transfer } from "./fixtures/compat.js"

type Leaf = "string" | "number" | "int" | "bool"
const LEAVES: ReadonlyArray<Leaf> = ["string", "number", "int", "bool"]
const NAMES = ["a", "b", "c", "d", "e"] as const
const TAGS = ["A", "B", "C", "D"] as const
const LITERALS = ["w", "x", "y", "z"] as const

interface FieldSpec {
  readonly name: string
  readonly optional: boolean
  readonly spec: Spec
}

interface MemberSpec {
  readonly tag: string
  readonly fields: ReadonlyArray<FieldSpec>
}

type Spec =
  | { readonly _tag: "Leaf"; readonly leaf: Leaf }
  | { readonly _tag: "Literals"; readonly values: ReadonlyArray<string> }
  | { readonly _tag: "Struct"; readonly fields: ReadonlyArray<FieldSpec> }
  | { readonly _tag: "Tagged"; readonly members: ReadonlyArray<MemberSpec> }
  | { readonly _tag: "Array"; readonly item: Spec }
  | { readonly _tag: "NullOr"; readonly spec: Spec }
  | { readonly _tag: "Option"; readonly spec: Spec }

const FieldSpec: Schema.Codec<FieldSpec> = Schema.Struct({
  name: Schema.Literals(NAMES),
  optional: Schema.Boolean,
  spec: Schema.suspend((): Schema.Codec<Spec> => SpecSchema)
})

const SpecSchema: Schema.Codec<Spec> = Schema.Union([
  Schema.TaggedStruct("Leaf", { leaf: Schema.Literals(LEAVES) }),
  Schema.TaggedStruct("Literals", { values: Schema.Array(Schema.Literals(LITERALS)) }),
  Schema.TaggedStruct("Struct", { fields: Schema.Array(FieldSpec) }),
  Schema.TaggedStruct("Tagged", {
    members: Schema.Array(Schema.Struct({ tag: Schema.Literals(TAGS), fields: Schema.Array(FieldSpec) }))
  }),
  Schema.TaggedStruct("Array", { item: Schema.suspend((): Schema.Codec<Spec> => SpecSchema) }),
  Schema.TaggedStruct("NullOr", { spec: Schema.suspend((): Schema.Codec<Spec> => SpecSchema) }),
  Schema.TaggedStruct("Option", { spec: Schema.suspend((): Schema.Codec<Spec> => SpecSchema) })
])

const OPS = [
  "addOptionalField",
  "addRequiredField",
  "removeField",
  "reorderFields",
  "toggleOptional",
  "addMember",
  "removeMember",
  "addLiteral",
  "removeLiteral",
  "changeLeaf",
  "wrapNullOr",
  "unwrapNullOr",
  "wrapArray"
] as const

// Member changes are weighted up: a new or dropped member inside an optional field (the warning case) needs one.
const WEIGHTED: ReadonlyArray<(typeof OPS)[number]> = [
  ...OPS,
  "addMember",
  "addMember",
  "addMember",
  "removeMember",
  "removeMember",
  "toggleOptional"
]

const small = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 30 }))
const OpInput = Schema.Struct({
  kind: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: WEIGHTED.length - 1 })),
  at: small,
  pick: small
})
type Op = { readonly kind: (typeof OPS)[number]; readonly at: number; readonly pick: number }

const Input = Schema.Struct({
  spec: SpecSchema,
  /** Half the cases put the generated Schema inside a tagged union in an optional field, where warnings live. */
  inOptionalUnion: Schema.Boolean,
  ops: Schema.Array(OpInput).check(Schema.isMinLength(1), Schema.isMaxLength(3))
})

// ---------------------------------------------------------------------------------------------------------------
// Specs: normalizing, evolving, building Schemas
// ---------------------------------------------------------------------------------------------------------------

const uniqueBy = <A>(items: ReadonlyArray<A>, key: (a: A) => string): Array<A> => {
  const seen = new Set<string>()
  return items.filter((item) => !seen.has(key(item)) && (seen.add(key(item)), true))
}

/** Unique field names, unique member tags, at least one literal and one member. */
const normalize = (spec: Spec): Spec => {
  switch (spec._tag) {
    case "Leaf":
      return spec
    case "Literals":
      return { _tag: "Literals", values: spec.values.length === 0 ? ["w"] : uniqueBy(spec.values, (v) => v) }
    case "Struct":
      return { _tag: "Struct", fields: normalizeFields(spec.fields) }
    case "Tagged": {
      const members = uniqueBy(spec.members, (m) => m.tag).map((m) => ({ tag: m.tag, fields: normalizeFields(m.fields) }))
      return { _tag: "Tagged", members: members.length === 0 ? [{ tag: "A", fields: [] }] : members }
    }
    case "Array":
      return { _tag: "Array", item: normalize(spec.item) }
    case "NullOr":
      return { _tag: "NullOr", spec: normalize(spec.spec) }
    case "Option":
      return { _tag: "Option", spec: normalize(spec.spec) }
  }
}

const normalizeFields = (fields: ReadonlyArray<FieldSpec>): Array<FieldSpec> =>
  uniqueBy(fields, (f) => f.name).map((f) => ({ ...f, spec: normalize(f.spec) }))

type Rewrite = (spec: Spec, pick: number) => Spec | undefined

/** Applies `rewrite` to the `at`-th node (depth first) it applies to, counting modulo the number of such nodes. */
const rewriteAt = (root: Spec, at: number, rewrite: Rewrite, pick: number): Spec => {
  let eligible = 0
  const count = (spec: Spec): void => {
    if (rewrite(spec, pick) !== undefined) eligible++
    children(spec).forEach(count)
  }
  count(root)
  if (eligible === 0) return root
  const target = at % eligible
  let index = 0
  const go = (spec: Spec): Spec => {
    if (rewrite(spec, pick) !== undefined && index++ === target) return rewrite(spec, pick)!
    return mapChildren(spec, go)
  }
  return go(root)
}

const children = (spec: Spec): Array<Spec> => {
  switch (spec._tag) {
    case "Struct":
      return spec.fields.map((f) => f.spec)
    case "Tagged":
      return spec.members.flatMap((m) => m.fields.map((f) => f.spec))
    case "Array":
      return [spec.item]
    case "NullOr":
    case "Option":
      return [spec.spec]
    default:
      return []
  }
}

const mapChildren = (spec: Spec, f: (spec: Spec) => Spec): Spec => {
  const fields = (fs: ReadonlyArray<FieldSpec>) => fs.map((field) => ({ ...field, spec: f(field.spec) }))
  switch (spec._tag) {
    case "Struct":
      return { _tag: "Struct", fields: fields(spec.fields) }
    case "Tagged":
      return { _tag: "Tagged", members: spec.members.map((m) => ({ tag: m.tag, fields: fields(m.fields) })) }
    case "Array":
      return { _tag: "Array", item: f(spec.item) }
    case "NullOr":
      return { _tag: "NullOr", spec: f(spec.spec) }
    case "Option":
      return { _tag: "Option", spec: f(spec.spec) }
    default:
      return spec
  }
}

/** Rewrites the field list of a struct, or of one member of a tagged union (chosen by `pick`). */
const onFields = (f: (fields: ReadonlyArray<FieldSpec>, pick: number) => ReadonlyArray<FieldSpec> | undefined): Rewrite =>
(spec, pick) => {
  if (spec._tag === "Struct") {
    const fields = f(spec.fields, pick)
    return fields === undefined ? undefined : { _tag: "Struct", fields }
  }
  if (spec._tag === "Tagged") {
    const i = pick % spec.members.length
    const fields = f(spec.members[i]!.fields, pick)
    if (fields === undefined) return undefined
    return { _tag: "Tagged", members: spec.members.map((m, j) => j === i ? { tag: m.tag, fields } : m) }
  }
  return undefined
}

const addField = (optional: boolean) =>
  onFields((fields, pick) => {
    const name = NAMES.find((n) => !fields.some((f) => f.name === n))
    return name === undefined ? undefined : [...fields, { name, optional, spec: { _tag: "Leaf", leaf: LEAVES[pick % 4]! } }]
  })

const rewrites: Record<Op["kind"], Rewrite> = {
  addOptionalField: addField(true),
  addRequiredField: addField(false),
  removeField: onFields((fields, pick) => fields.length === 0 ? undefined : fields.filter((_, i) => i !== pick % fields.length)),
  reorderFields: onFields((fields) => fields.length < 2 ? undefined : [...fields].reverse()),
  toggleOptional: onFields((fields, pick) =>
    fields.length === 0
      ? undefined
      : fields.map((f, i) => i === pick % fields.length ? { ...f, optional: !f.optional } : f)
  ),
  addMember: (spec) => {
    if (spec._tag !== "Tagged") return undefined
    const tag = TAGS.find((t) => !spec.members.some((m) => m.tag === t))
    return tag === undefined ? undefined : { _tag: "Tagged", members: [...spec.members, { tag, fields: [] }] }
  },
  removeMember: (spec, pick) =>
    spec._tag !== "Tagged" || spec.members.length < 2
      ? undefined
      : { _tag: "Tagged", members: spec.members.filter((_, i) => i !== pick % spec.members.length) },
  addLiteral: (spec) => {
    if (spec._tag !== "Literals") return undefined
    const value = LITERALS.find((v) => !spec.values.includes(v))
    return value === undefined ? undefined : { _tag: "Literals", values: [...spec.values, value] }
  },
  removeLiteral: (spec, pick) =>
    spec._tag !== "Literals" || spec.values.length < 2
      ? undefined
      : { _tag: "Literals", values: spec.values.filter((_, i) => i !== pick % spec.values.length) },
  changeLeaf: (spec, pick) => spec._tag !== "Leaf" ? undefined : { _tag: "Leaf", leaf: LEAVES[pick % 4]! },
  wrapNullOr: (spec) => ({ _tag: "NullOr", spec }),
  unwrapNullOr: (spec) => spec._tag === "NullOr" ? spec.spec : undefined,
  wrapArray: (spec) => ({ _tag: "Array", item: spec })
}

const optionalUnionAround = (spec: Spec): Spec => ({
  _tag: "Struct",
  fields: [{
    name: "a",
    optional: true,
    spec: {
      _tag: "Tagged",
      members: [{ tag: "A", fields: [] }, { tag: "B", fields: [{ name: "b", optional: false, spec }] }]
    }
  }]
})

const evolve = (spec: Spec, ops: ReadonlyArray<Op>): Spec =>
  ops.reduce((current, op) => rewriteAt(current, op.at, rewrites[op.kind], op.pick), spec)

const leafSchema: Record<Leaf, Schema.Top> = {
  string: Schema.String,
  number: Schema.Number,
  int: Schema.Int,
  bool: Schema.Boolean
}

const schemaOf = (spec: Spec): Schema.Top => {
  switch (spec._tag) {
    case "Leaf":
      return leafSchema[spec.leaf]
    case "Literals":
      return Schema.Literals(spec.values)
    case "Struct":
      return Schema.Struct(fieldsOf(spec.fields))
    case "Tagged":
      return Schema.Union(spec.members.map((m) => Schema.TaggedStruct(m.tag, fieldsOf(m.fields))))
    case "Array":
      return Schema.Array(schemaOf(spec.item))
    case "NullOr":
      return Schema.NullOr(schemaOf(spec.spec))
    case "Option":
      return Schema.Option(schemaOf(spec.spec))
  }
}

const fieldsOf = (fields: ReadonlyArray<FieldSpec>): Schema.Struct.Fields =>
  Object.fromEntries(fields.map((f) => [f.name, f.optional ? Schema.optionalKey(schemaOf(f.spec)) : schemaOf(f.spec)]))

// ---------------------------------------------------------------------------------------------------------------
// What the reader should see
// ---------------------------------------------------------------------------------------------------------------

/** A value SchemaBinary skips: the reader does not know its union member. */
const DROPPED = Symbol("dropped")

// NullOr(NullOr(X)) is one union of X and null on the wire.
const nonNull = (spec: Spec): Spec => spec._tag === "NullOr" ? nonNull(spec.spec) : spec

/** SchemaBinary's member kind of a spec: what selects it in a union. */
const kindOf = (spec: Spec): string => {
  switch (spec._tag) {
    case "Leaf":
      return spec.leaf === "int" ? "number" : spec.leaf
    case "Literals":
      return "string"
    case "Struct":
      return "struct"
    case "Array":
      return "array"
    case "Option":
      return "option"
    case "NullOr":
      return kindOf(spec.spec)
    case "Tagged":
      return "variant"
  }
}

const memberKey = (spec: Spec, value: unknown): string =>
  spec._tag === "Tagged" ? `variant ${(value as { readonly _tag: string })._tag}` : kindOf(spec)

const memberKeys = (spec: Spec): Array<string> =>
  spec._tag === "Tagged" ? spec.members.map((m) => `variant ${m.tag}`) : [kindOf(spec)]

const project = (value: unknown, writerSpec: Spec, readerSpec: Spec): unknown => {
  if (value === null) return readerSpec._tag === "NullOr" ? null : DROPPED
  const writer = nonNull(writerSpec)
  const reader = nonNull(readerSpec)
  // In a union (with null, or of tagged members) SchemaBinary skips a member the reader does not have.
  const union = readerSpec._tag === "NullOr" || reader._tag === "Tagged"
  if (union && !memberKeys(reader).includes(memberKey(writer, value))) return DROPPED
  switch (reader._tag) {
    case "Option": {
      if (writer._tag !== "Option" || !Option.isOption(value)) return value
      if (Option.isNone(value)) return value
      const inner = project(value.value, writer.spec, reader.spec)
      return inner === DROPPED ? DROPPED : Option.some(inner)
    }
    case "Array": {
      if (writer._tag !== "Array" || !Array.isArray(value)) return value
      const items = value.map((item) => project(item, writer.item, reader.item))
      return items.includes(DROPPED) ? DROPPED : items
    }
    case "Struct":
      return writer._tag === "Struct" ? projectFields(value as Record<string, unknown>, writer.fields, reader.fields) : value
    case "Tagged": {
      if (writer._tag !== "Tagged") return value
      const tag = (value as { readonly _tag: string })._tag
      const from = writer.members.find((m) => m.tag === tag)!
      const to = reader.members.find((m) => m.tag === tag)
      if (to === undefined) return DROPPED
      const fields = projectFields(value as Record<string, unknown>, from.fields, to.fields)
      return fields === DROPPED ? DROPPED : { ...(fields as object), _tag: tag }
    }
    default:
      return value
  }
}

const projectFields = (
  value: Record<string, unknown>,
  writer: ReadonlyArray<FieldSpec>,
  reader: ReadonlyArray<FieldSpec>
): unknown => {
  const out: Record<string, unknown> = {}
  for (const field of reader) {
    const written = writer.find((f) => f.name === field.name)
    if (written === undefined || !Object.hasOwn(value, field.name)) {
      if (!field.optional) return DROPPED
      continue
    }
    const projected = project(value[field.name], written.spec, field.spec)
    if (projected === DROPPED) {
      if (!field.optional) return DROPPED
      continue
    }
    out[field.name] = projected
  }
  return out
}

// Strings cross as UTF-8, which has no lone surrogates: SchemaBinary writes U+FFFD for one, whatever the versions.
const utf8 = (s: string): string => new TextDecoder().decode(new TextEncoder().encode(s))

const same = (a: unknown, b: unknown): boolean => {
  if (typeof a === "number" && typeof b === "number") return a === b || (Number.isNaN(a) && Number.isNaN(b))
  if (typeof a === "string" && typeof b === "string") return utf8(a) === utf8(b)
  if (Option.isOption(a) || Option.isOption(b)) {
    if (!Option.isOption(a) || !Option.isOption(b) || a._tag !== b._tag) return false
    return Option.isNone(a) || same(a.value, (b as Option.Some<unknown>).value)
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => same(x, b[i]))
  }
  if (a !== null && b !== null && typeof a === "object" && typeof b === "object") {
    const ka = Object.keys(a).sort()
    const kb = Object.keys(b).sort()
    return same(ka, kb) && ka.every((k) => same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
  }
  return a === b
}

// ---------------------------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------------------------

const Case = Arbitrary.schema(Input).pipe(
  Arbitrary.flatMap(({ inOptionalUnion, ops, spec }) => {
    const v1 = inOptionalUnion ? optionalUnionAround(normalize(spec)) : normalize(spec)
    const v2 = evolve(v1, ops.map((op) => ({ ...op, kind: WEIGHTED[op.kind]! })))
    const s1 = schemaOf(v1)
    const s2 = schemaOf(v2)
    return Arbitrary.all({
      v1: Arbitrary.Constant(v1),
      v2: Arbitrary.Constant(v2),
      s1: Arbitrary.Constant(s1),
      s2: Arbitrary.Constant(s2),
      written1: Arbitrary.array(Arbitrary.schema(s1), { maxLength: 4 }),
      written2: Arbitrary.array(Arbitrary.schema(s2), { maxLength: 4 })
    })
  })
)

const seen = { compatible: 0, incompatible: 0, warned: 0, values: 0 }

describe("RpcCompatibility properties", () => {
  it.effect.prop(
    "whenever the checker finds no error in a direction, the writer's values decode to what the reader should see",
    [Case],
    ([c]) =>
      Effect.sync(() => {
        const directions = [
          { writer: c.s1, reader: c.s2, wspec: c.v1, rspec: c.v2, values: c.written1 },
          { writer: c.s2, reader: c.s1, wspec: c.v2, rspec: c.v1, values: c.written2 }
        ]
        for (const d of directions) {
          const issues = issuesFor(d.writer, d.reader)
          if (issues.some((issue) => issue.severity === "error")) {
            seen.incompatible++
            continue
          }
          seen.compatible++
          if (issues.some((issue) => issue.severity === "warning")) seen.warned++
          for (const value of d.values) {
            seen.values++
            const result = transfer(d.writer, d.reader, value)
            const expected = project(value, d.wspec, d.rspec)
            const context = `${JSON.stringify(d.wspec)} → ${JSON.stringify(d.rspec)}, value ${String(JSON.stringify(value))}, ` +
              `issues ${JSON.stringify(issues.map((i) => i.kind))}`
            assert.isTrue(Result.isSuccess(result), `the checker found no error, yet decoding failed: ${context}`)
            assert.isTrue(expected !== DROPPED, `the value should have been refused: ${context}`)
            assert.isTrue(
              same((result as Result.Success<unknown, string>).success, expected),
              `decoded ${JSON.stringify((result as Result.Success<unknown, string>).success)}, expected ${
                JSON.stringify(expected)
              }: ${context}`
            )
          }
        }
      }),
    { arbitrary: { runs: 300 } }
  )

  it("the random evolutions were both compatible and incompatible, with values that crossed", () => {
    assert.isAbove(seen.compatible, 50)
    assert.isAbove(seen.incompatible, 50)
    assert.isAbove(seen.warned, 0)
    assert.isAbove(seen.values, 100)
  })
})
