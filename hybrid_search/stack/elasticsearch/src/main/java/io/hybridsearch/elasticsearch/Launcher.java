package io.hybridsearch.elasticsearch;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.PluginsLoader;

/**
 * Starts one single-node Elasticsearch 8 cluster in this JVM, through the public
 * {@code Node(Environment, PluginsLoader)} constructor (the distribution's bootstrap is not on Maven Central).
 *
 * Run by `hybrid-search stack up --engine elasticsearch`:
 *   java -cp launcher.jar:<server class path> io.hybridsearch.elasticsearch.Launcher \
 *        --home DIR --http-port 9400 --transport-port 9500 [--node-name es-node-1] [--cluster-name C]
 * Modules (transport-netty4 and our own two) are folders under DIR/modules, each with a
 * plugin-descriptor.properties, loaded by ES's own PluginsLoader as in a distribution. Logging goes to
 * the console as configured by DIR/config/log4j2.properties. No security manager, no bootstrap checks and
 * no root check: those live in the distribution's bootstrap, which is not run here.
 * Every failure is printed with its stack trace before exiting 1.
 */
public final class Launcher {
    public static void main(String[] args) throws Exception {
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                System.err.println("launcher: bad argument " + args[i]);
                System.exit(2);
            }
            opts.put(args[i].substring(2), args[++i]);
        }
        Path home = Path.of(require(opts, "home")).toAbsolutePath();
        String httpPort = require(opts, "http-port");
        String transportPort = require(opts, "transport-port");
        String nodeName = opts.getOrDefault("node-name", "es-node-1");
        String host = opts.getOrDefault("host", "127.0.0.1");

        Node node;
        try {
            for (String dir : new String[] {"config", "data", "logs", "modules", "plugins"}) {
                Files.createDirectories(home.resolve(dir));
            }
            Settings settings = Settings.builder()
                .put("path.home", home.toString())
                .put("path.data", home.resolve("data").toString())
                .put("path.logs", home.resolve("logs").toString())
                .put("cluster.name", opts.getOrDefault("cluster-name", "hybrid-search-es"))
                .put("node.name", nodeName)
                .put("network.host", host)
                .put("http.port", httpPort)
                .put("transport.port", transportPort)
                .put("discovery.type", "single-node")
                .put("cluster.routing.allocation.disk.threshold_enabled", false)
                .put("action.auto_create_index", false)
                .build();
            // ES's logging API must be routed to log4j before any ES class logs
            LogConfigurator.configureESLogging();
            Environment env = InternalSettingsPreparer.prepareEnvironment(
                settings, Map.of(), home.resolve("config"), () -> nodeName);
            LogConfigurator.registerErrorListener();
            LogConfigurator.setNodeName(nodeName);
            LogConfigurator.configure(env, true);
            PluginsLoader plugins = PluginsLoader.createPluginsLoader(
                PluginsLoader.loadModulesBundles(env.modulesDir()),
                PluginsLoader.loadPluginsBundles(env.pluginsDir()),
                Map.of(),
                false);
            node = new Node(env, plugins);
            node.start();
        } catch (Throwable t) {
            System.err.println("launcher: the node failed to start");
            t.printStackTrace();
            System.exit(1);
            return;
        }
        System.out.println("launcher: node " + nodeName + " started, http " + host + ":" + httpPort);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.prepareForClose();
                node.close();
                node.awaitClose(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "launcher-shutdown"));
        stopped.await();
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
