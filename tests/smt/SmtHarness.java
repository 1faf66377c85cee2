// Applies Kafka Connect's own single message transforms and predicates to the records of
// tests/smt/cases.json, through Connect's JsonConverter (keys, values) and StringConverter
// (headers), and prints what comes out as JSON: the reference airconnect's transforms are
// compared with, byte for byte (tests/integration/test_smt_vs_kafka_connect.py).
//
// Build and run (the test does this once per session, into .stack/):
//   javac -cp '.stack/kafka-libs/*' -d .stack/smt-harness tests/smt/SmtHarness.java
//   java -Duser.timezone=UTC -Duser.language=en -cp '.stack/smt-harness:.stack/kafka-libs/*' SmtHarness tests/smt/cases.json

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.header.ConnectHeaders;
import org.apache.kafka.connect.header.Header;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.storage.Converter;
import org.apache.kafka.connect.storage.StringConverter;
import org.apache.kafka.connect.transforms.Transformation;
import org.apache.kafka.connect.transforms.predicates.Predicate;

public class SmtHarness {
    public static void main(String[] args) throws Exception {
        ObjectMapper mapper = new ObjectMapper();
        JsonNode root = mapper.readTree(new File(args[0]));
        ArrayNode out = mapper.createArrayNode();
        for (JsonNode c : root.get("cases")) {
            out.add(run(mapper, c));
        }
        System.out.write(mapper.writeValueAsBytes(out));
        System.out.flush();
    }

    private static byte[] bytes(JsonNode node) {
        return node == null || node.isNull() ? null : node.asText().getBytes(StandardCharsets.UTF_8);
    }

    private static String b64(byte[] data) {
        return data == null ? null : Base64.getEncoder().encodeToString(data);
    }

    private static Map<String, String> sub(Map<String, String> cfg, String prefix, List<String> skip) {
        Map<String, String> out = new HashMap<>();
        for (Map.Entry<String, String> e : cfg.entrySet()) {
            if (e.getKey().startsWith(prefix)) {
                String name = e.getKey().substring(prefix.length());
                if (!skip.contains(name)) out.put(name, e.getValue());
            }
        }
        return out;
    }

    private static List<String> aliases(String text) {
        List<String> out = new ArrayList<>();
        if (text == null || text.trim().isEmpty()) return out;
        for (String a : text.trim().split("\\s*,\\s*")) out.add(a);
        return out;
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private static ObjectNode run(ObjectMapper mapper, JsonNode c) {
        ObjectNode result = mapper.createObjectNode();
        result.put("id", c.get("id").asText());
        ArrayNode records = result.putArray("records");
        try {
            JsonNode conv = c.path("converter");
            String decimalFormat = conv.path("decimal.format").asText("BASE64");
            Map<String, Object> keyCfg = new HashMap<>();
            keyCfg.put("schemas.enable", conv.path("key.schemas.enable").asBoolean(true));
            keyCfg.put("decimal.format", decimalFormat);
            JsonConverter keyConverter = new JsonConverter();
            keyConverter.configure(keyCfg, true);
            Converter valueConverter;
            if ("string".equals(conv.path("value.converter").asText("json"))) {
                valueConverter = new StringConverter();
                valueConverter.configure(new HashMap<>(), false);
            } else {
                Map<String, Object> valueCfg = new HashMap<>();
                valueCfg.put("schemas.enable", conv.path("value.schemas.enable").asBoolean(true));
                valueCfg.put("decimal.format", decimalFormat);
                valueConverter = new JsonConverter();
                valueConverter.configure(valueCfg, false);
            }
            StringConverter headerConverter = new StringConverter();
            headerConverter.configure(new HashMap<>(), false);

            String topic = c.get("topic").asText();
            Integer partition = c.hasNonNull("partition") ? c.get("partition").asInt() : null;
            Long timestamp = c.hasNonNull("timestamp") ? c.get("timestamp").asLong() : null;
            SchemaAndValue key = keyConverter.toConnectData(topic, bytes(c.get("key")));
            SchemaAndValue value = valueConverter.toConnectData(topic, bytes(c.get("value")));
            ConnectHeaders headers = new ConnectHeaders();
            for (JsonNode h : c.path("headers")) {
                String name = h.get(0).asText();
                headers.add(name, headerConverter.toConnectHeader(topic, name, bytes(h.get(1))));
            }
            ConnectRecord record;
            if ("source".equals(c.path("kind").asText("sink"))) {
                record = new SourceRecord(new HashMap<>(), new HashMap<>(), topic, partition, key.schema(), key.value(),
                        value.schema(), value.value(), timestamp, headers);
            } else {
                record = new SinkRecord(topic, partition == null ? 0 : partition, key.schema(), key.value(),
                        value.schema(), value.value(), c.path("offset").asLong(0), timestamp,
                        timestamp == null ? TimestampType.NO_TIMESTAMP_TYPE : TimestampType.CREATE_TIME, headers);
            }

            Map<String, String> cfg = new HashMap<>();
            Iterator<Map.Entry<String, JsonNode>> it = c.get("config").fields();
            while (it.hasNext()) {
                Map.Entry<String, JsonNode> e = it.next();
                cfg.put(e.getKey(), e.getValue().asText());
            }
            Map<String, Predicate> predicates = new HashMap<>();
            for (String alias : aliases(cfg.get("predicates"))) {
                Predicate p = (Predicate) Class.forName(cfg.get("predicates." + alias + ".type"))
                        .getDeclaredConstructor().newInstance();
                p.configure(sub(cfg, "predicates." + alias + ".", List.of("type")));
                predicates.put(alias, p);
            }
            for (String alias : aliases(cfg.get("transforms"))) {
                String prefix = "transforms." + alias + ".";
                Transformation t = (Transformation) Class.forName(cfg.get(prefix + "type"))
                        .getDeclaredConstructor().newInstance();
                t.configure(sub(cfg, prefix, List.of("type", "predicate", "negate")));
                Predicate p = cfg.containsKey(prefix + "predicate") ? predicates.get(cfg.get(prefix + "predicate")) : null;
                boolean negate = Boolean.parseBoolean(cfg.getOrDefault(prefix + "negate", "false"));
                if (p != null && p.test(record) == negate) continue;
                record = (ConnectRecord) t.apply(record);
                if (record == null) break;
            }
            if (record != null) {
                ObjectNode r = records.addObject();
                r.put("topic", record.topic());
                if (record.kafkaPartition() == null) r.putNull("partition"); else r.put("partition", record.kafkaPartition());
                r.put("key", b64(keyConverter.fromConnectData(record.topic(), record.keySchema(), record.key())));
                r.put("value", b64(valueConverter.fromConnectData(record.topic(), record.valueSchema(), record.value())));
                if (record.timestamp() == null) r.putNull("timestamp"); else r.put("timestamp", record.timestamp());
                ArrayNode hs = r.putArray("headers");
                for (Header h : record.headers()) {
                    ArrayNode pair = hs.addArray();
                    pair.add(h.key());
                    pair.add(b64(headerConverter.fromConnectHeader(record.topic(), h.key(), h.schema(), h.value())));
                }
            }
        } catch (Throwable e) {
            result.put("error", e.getClass().getName() + ": " + e.getMessage());
        }
        return result;
    }
}
