package directory

// CacheEntries counts the lookups the cache holds, every kind together
// (found entries and remembered misses), for the admin API's status.
func (d *Directory) CacheEntries() int {
	return d.orgBySlug.cache.len() + d.orgByID.cache.len() + d.installation.cache.len() +
		d.appByID.cache.len() + d.appBySlug.cache.len() + d.projectKey.cache.len() +
		d.integByExt.cache.len() + d.integByID.cache.len() + d.orgInteg.cache.len()
}
