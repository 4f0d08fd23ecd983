"""Feed -> articles: fetch a feed's bytes (`fetch`), read them into plain entries (`parse`),
make each entry's teaser and lead image (`teasers`), and keep them as articles (`store`)."""
