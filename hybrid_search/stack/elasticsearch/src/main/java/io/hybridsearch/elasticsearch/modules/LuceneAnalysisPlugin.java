package io.hybridsearch.elasticsearch.modules;

import java.util.Map;
import java.util.TreeMap;
import java.util.function.BiFunction;
import java.util.function.Function;

import org.apache.lucene.analysis.Analyzer;
import org.apache.lucene.analysis.CharArraySet;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.cjk.CJKAnalyzer;
import org.apache.lucene.analysis.cjk.CJKBigramFilter;
import org.apache.lucene.analysis.cjk.CJKWidthFilter;
import org.apache.lucene.analysis.core.KeywordTokenizer;
import org.apache.lucene.analysis.core.WhitespaceTokenizer;
import org.apache.lucene.analysis.en.EnglishAnalyzer;
import org.apache.lucene.analysis.en.EnglishPossessiveFilter;
import org.apache.lucene.analysis.en.KStemFilter;
import org.apache.lucene.analysis.en.PorterStemFilter;
import org.apache.lucene.analysis.miscellaneous.ASCIIFoldingFilter;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.index.analysis.AbstractIndexAnalyzerProvider;
import org.elasticsearch.index.analysis.Analysis;
import org.elasticsearch.index.analysis.AnalyzerProvider;
import org.elasticsearch.index.analysis.NormalizingTokenFilterFactory;
import org.elasticsearch.index.analysis.TokenFilterFactory;
import org.elasticsearch.index.analysis.TokenizerFactory;
import org.elasticsearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.elasticsearch.plugins.AnalysisPlugin;
import org.elasticsearch.plugins.Plugin;

/**
 * The analysis components the products mapping uses that Elasticsearch ships in its analysis-common module,
 * which is not published on Maven Central. Each wraps the Lucene class of the same name from
 * lucene-analysis-common (a dependency of the server jar), as analysis-common itself does:
 *
 *   analyzers   english (EnglishAnalyzer), cjk (CJKAnalyzer); both take `stopwords`
 *   filters     asciifolding (`preserve_original`) and cjk_width, both usable in normalizers;
 *               cjk_bigram, porter_stem, kstem, english_possessive
 *   tokenizers  whitespace, keyword
 *
 * Not supported: the english analyzer's `stem_exclusion`, and everything else of analysis-common.
 */
public class LuceneAnalysisPlugin extends Plugin implements AnalysisPlugin {

    @Override
    public Map<String, AnalysisProvider<AnalyzerProvider<? extends Analyzer>>> getAnalyzers() {
        Map<String, AnalysisProvider<AnalyzerProvider<? extends Analyzer>>> analyzers = new TreeMap<>();
        analyzers.put("english", analyzer(EnglishAnalyzer.ENGLISH_STOP_WORDS_SET, EnglishAnalyzer::new));
        analyzers.put("cjk", analyzer(CJKAnalyzer.getDefaultStopSet(), CJKAnalyzer::new));
        return analyzers;
    }

    @Override
    public Map<String, AnalysisProvider<TokenFilterFactory>> getTokenFilters() {
        Map<String, AnalysisProvider<TokenFilterFactory>> filters = new TreeMap<>();
        filters.put("asciifolding", normalizing((s, ts) -> new ASCIIFoldingFilter(ts, s.getAsBoolean("preserve_original", false))));
        filters.put("cjk_width", normalizing((s, ts) -> new CJKWidthFilter(ts)));
        filters.put("cjk_bigram", filter(CJKBigramFilter::new));
        filters.put("porter_stem", filter(PorterStemFilter::new));
        filters.put("kstem", filter(KStemFilter::new));
        filters.put("english_possessive", filter(EnglishPossessiveFilter::new));
        return filters;
    }

    @Override
    public Map<String, AnalysisProvider<TokenizerFactory>> getTokenizers() {
        Map<String, AnalysisProvider<TokenizerFactory>> tokenizers = new TreeMap<>();
        tokenizers.put("whitespace", (indexSettings, env, name, s) -> TokenizerFactory.newFactory(name, WhitespaceTokenizer::new));
        tokenizers.put("keyword", (indexSettings, env, name, s) -> TokenizerFactory.newFactory(name, KeywordTokenizer::new));
        return tokenizers;
    }

    private static AnalysisProvider<AnalyzerProvider<? extends Analyzer>> analyzer(
        CharArraySet defaultStopWords,
        Function<CharArraySet, Analyzer> constructor
    ) {
        return (indexSettings, env, name, settings) -> {
            Analyzer analyzer = constructor.apply(Analysis.parseStopWords(env, settings, defaultStopWords));
            return new AbstractIndexAnalyzerProvider<Analyzer>(name, settings) {
                @Override
                public Analyzer get() {
                    return analyzer;
                }
            };
        };
    }

    private static AnalysisProvider<TokenFilterFactory> filter(Function<TokenStream, TokenStream> wrap) {
        return (indexSettings, env, name, settings) -> new TokenFilterFactory() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public TokenStream create(TokenStream tokenStream) {
                return wrap.apply(tokenStream);
            }
        };
    }

    /** A filter that works on single terms too, so normalizers (keyword fields) and multi-term queries may use it. */
    private static AnalysisProvider<TokenFilterFactory> normalizing(BiFunction<Settings, TokenStream, TokenStream> wrap) {
        return (indexSettings, env, name, settings) -> new NormalizingTokenFilterFactory() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public TokenStream create(TokenStream tokenStream) {
                return wrap.apply(settings, tokenStream);
            }
        };
    }
}
