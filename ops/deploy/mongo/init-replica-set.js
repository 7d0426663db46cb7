// Initiates the three-member replica set once, then waits until it has a primary.
// Run by compose's one-shot `mongo-init` service; safe to run again (it finds the set initiated).
const config = {
  _id: "rs0",
  members: [
    { _id: 0, host: "mongo1:27017", priority: 2 },
    { _id: 1, host: "mongo2:27017", priority: 1 },
    { _id: 2, host: "mongo3:27017", priority: 1 },
  ],
};

try {
  const status = rs.status();
  print(`replica set ${status.set} already initiated`);
} catch (error) {
  if (error.codeName !== "NotYetInitialized") {
    throw error;
  }
  rs.initiate(config);
  print("replica set rs0 initiated");
}

const deadline = Date.now() + 120 * 1000;
while (!db.hello().isWritablePrimary && !db.hello().primary) {
  if (Date.now() > deadline) {
    throw new Error("no primary elected within 120s");
  }
  sleep(500);
}
print(`primary: ${db.hello().primary}`);
