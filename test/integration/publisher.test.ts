import { JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import { jserrors } from "@nats-io/jetstream/internal";
import { ClosedConnectionError, connect, TimeoutError } from "@nats-io/transport-node";
import { StreamPublisher } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

describe("stream publisher", () => {
  it("publisher - 1,000 publishes in flight are acked in order; dedup, CAS conflict, no stream, a silent responder and a closed connection give js.publish's errors", async () => {
    const nc = await connect({ servers: nats.url, noAsyncTraces: true });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "PUBTEST", subjects: ["pubtest.>"] });
    const publisher = new StreamPublisher(nc, "_INBOX", 1000);

    const acks = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => publisher.publish(`pubtest.${i % 10}`, `m${i}`)),
    );
    expect(acks.map((a) => a.seq)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect(acks.every((a) => a.stream === "PUBTEST" && a.duplicate === false)).toBe(true);

    const first = await publisher.publish("pubtest.x", "a", { msgID: "same" });
    expect(await publisher.publish("pubtest.x", "a", { msgID: "same" })).toMatchObject({
      seq: first.seq,
      duplicate: true,
    });
    const conflict = await publisher.publish("pubtest.x", "b", { expect: { lastSubjectSequence: 1 } }).catch((e) => e);
    expect(conflict).toBeInstanceOf(JetStreamApiError);
    expect((conflict as JetStreamApiError).code).toBe(10071);
    const cas = await publisher.publish("pubtest.x", "c", { expect: { lastSubjectSequence: first.seq } });
    expect(cas.seq).toBe(first.seq + 1);

    await expect(publisher.publish("nostream.x", "d")).rejects.toBeInstanceOf(jserrors.JetStreamNotEnabled);
    // A subscriber that never answers: the publish fails after the publisher's timeout (1 s here).
    nc.subscribe("silent.>");
    const started = Date.now();
    await expect(publisher.publish("silent.x", "e")).rejects.toBeInstanceOf(TimeoutError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);

    const pending = publisher.publish("silent.y", "f");
    await nc.close();
    await expect(pending).rejects.toBeInstanceOf(ClosedConnectionError);
    const admin = await connect({ servers: nats.url });
    await (await jetstreamManager(admin)).streams.delete("PUBTEST");
    await admin.close();
  });
});
