import { describe, expect, it } from "vitest";
import { startNamespace, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

/**
 * What the SDK's types accept and refuse, checked by `npm test`'s type check (the `@ts-expect-error` lines fail it when
 * a mistake compiles), and run: children of several tasks at once, interface inputs, an explicit output type.
 */
describe("sdk types", () => {
  it("child runs - one task's children are typed by its declaration; several tasks', interfaces and explicit outputs compile", async () => {
    interface SquareIn {
      i: number;
    }
    interface CubeIn {
      x: number;
    }
    const { engine, tj } = await startNamespace(nats.url);
    const square = tj.task({ name: "square", fn: async (input: SquareIn) => ({ sq: input.i * input.i }) });
    const cube = tj.task({ name: "cube", fn: async (input: CubeIn) => ({ cu: input.x ** 3 }) });
    const maybe = tj.task({
      name: "maybe",
      fn: async (input: { n: number }) => (input.n > 1 ? { big: true } : undefined),
    });
    const parent = tj.task({
      name: "typed-parent",
      fn: async (_input, ctx) => {
        const one: { sq: number } = await ctx.runChild(square, { i: 2 });
        // @ts-expect-error square takes { i: number }
        void ctx.runChildNoWait(square, { x: 1 }).catch(() => undefined);
        const typedInput: SquareIn = { i: 3 };
        // An explicit output type: the input is any object, an interface included.
        const explicit = await ctx.runChild<{ sq: number }>(square, typedInput);
        const same: { sq: number }[] = await ctx.bulkRunChildren([
          { task: square, input: { i: 4 } },
          { task: square, input: { i: 5 } },
        ]);
        const kids: readonly { task: typeof square; input: SquareIn }[] = [{ task: square, input: { i: 6 } }];
        const fromReadonly = await ctx.bulkRunChildren(kids);
        // Several tasks in one call: JSON objects back.
        const mixed = await ctx.bulkRunChildren([
          { task: square, input: { i: 7 } },
          { task: cube, input: { x: 2 } },
          { task: "square", input: { i: 8 } },
        ]);
        const none = await ctx.runChild(maybe, { n: 0 });
        // Each member of the union apart: an object, or what nothing becomes.
        const big: boolean | unknown = "big" in none ? none.big : undefined;
        return {
          one: one.sq,
          explicit: explicit.sq,
          same: same.map((s) => s.sq),
          fromReadonly: fromReadonly[0]?.sq,
          mixed,
          none,
          big: big ?? null,
        };
      },
    });
    await (await tj.worker("w", { workflows: [square, cube, maybe, parent], slots: 20 })).start();
    expect(await parent.run({})).toEqual({
      one: 4,
      explicit: 9,
      same: [16, 25],
      fromReadonly: 36,
      mixed: [{ sq: 49 }, { cu: 8 }, { sq: 64 }],
      none: {},
      big: null,
    });
    await tj.close();
    await engine.stop();
  });
});
