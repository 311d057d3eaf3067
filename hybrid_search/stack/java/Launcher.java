/*
 * Starts one OpenSearch node (with the k-NN plugin loaded from the classpath) in this JVM.
 *
 * Run by `hybrid-search stack up` as a single-file source program:
 *   java -cp <classpath> Launcher.java --home DIR --http-port 9200 --transport-port 9300 \
 *        --node-name node-1 --cluster-name hybrid-search [--seed-hosts h:p,...] [--initial-managers a,b,c]
 * Without --seed-hosts the node forms a single-node cluster. One node per JVM: the k-NN plugin keeps
 * process-wide singletons, so a multi-node cluster is several JVMs on loopback.
 * Unlike the runner's own main(), every failure is printed with its stack trace before exiting 1.
 */
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.codelibs.opensearch.runner.OpenSearchRunner;

public class Launcher {
    public static void main(String[] args) throws Exception {
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                System.err.println("launcher: bad argument " + args[i]);
                System.exit(2);
            }
            opts.put(args[i].substring(2), args[++i]);
        }
        String home = require(opts, "home");
        String httpPort = require(opts, "http-port");
        String transportPort = require(opts, "transport-port");
        String nodeName = opts.getOrDefault("node-name", "node-1");
        String clusterName = opts.getOrDefault("cluster-name", "hybrid-search");
        String host = opts.getOrDefault("host", "127.0.0.1");
        String seedHosts = opts.getOrDefault("seed-hosts", "");
        String managers = opts.getOrDefault("initial-managers", "");

        OpenSearchRunner runner = new OpenSearchRunner();
        // the runner probes ports from --http-port up to its maximum (default 9299: any higher port "is
        // unavailable") and silently moves on to the next free one; exactly the port asked for, or a clear error
        runner.setMaxHttpPort(Integer.parseInt(httpPort));
        runner.onBuild((number, settings) -> {
            settings.put("node.name", nodeName);
            settings.put("network.host", host);
            settings.put("http.port", httpPort);
            settings.put("transport.port", transportPort);
            settings.put("cluster.routing.allocation.disk.threshold_enabled", false);
            settings.put("action.auto_create_index", false);
            if (seedHosts.isEmpty()) {
                settings.put("discovery.type", "single-node");
            } else {
                settings.putList("discovery.seed_hosts", seedHosts.split(","));
                settings.putList("cluster.initial_cluster_manager_nodes", managers.split(","));
            }
        });
        try {
            runner.build(OpenSearchRunner.newConfigs()
                    .basePath(home)
                    .numOfNode(1)
                    .baseHttpPort(Integer.parseInt(httpPort) - 1)
                    .clusterName(clusterName)
                    .useLogger()
                    .pluginTypes("org.opensearch.knn.plugin.KNNPlugin"));
        } catch (Throwable t) {
            System.err.println("launcher: the node failed to start");
            t.printStackTrace();
            System.exit(1);
        }
        System.out.println("launcher: node " + nodeName + " started, http " + host + ":" + httpPort);
        CountDownLatch stop = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
            stop.countDown();
        }));
        stop.await();
    }

    private static String require(Map<String, String> opts, String key) {
        String value = opts.get(key);
        if (value == null) {
            System.err.println("launcher: missing --" + key);
            System.exit(2);
        }
        return value;
    }
}
