#!/bin/sh
# Stand-in for the Kafka distribution's script: runs a class with every jar in
# /opt/kafka/libs (the Maven Central jars of scripts/kafka-local). Heap: KAFKA_HEAP_OPTS.
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*' "$@"
